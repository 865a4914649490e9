"""Run every mode in a worker process of its own, one after another, and sum up what they measured: p50/p95 per
stage, mask counts, peak RSS per process, the ratio to the seed and agreement with it on the same frames."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from promptbox.bench.modes import MATCH_IOU, MODE_LABELS, MODES, box_iou, matched_fraction
from promptbox.bench.options import BenchOptions
from promptbox.bench.workloads import Workload, images_workload, resolve_weights, world_workload
from promptbox.config import fast_map_on

WORKER = "promptbox.bench.worker"


class WorkerError(RuntimeError):
    """A mode's worker process failed; its own output, above the error, says why."""


def run(options: BenchOptions) -> dict:
    """Time every mode on the workload; returns a JSON-ready dict (bench.table.format_table reads it)."""
    if options.images is not None:
        workload = images_workload(options.images, options.size, options.command)
    else:
        workload = world_workload(options.scenes, options.world_seed, options.size, options.command,
                                  options.world_dir)
    sam_checkpoint, clip_model = resolve_weights(options.sam_checkpoint, options.clip_model, options.random_weights)
    seed_frames = 0 if options.skip_seed else min(options.seed_frames, len(workload.frames))
    jobs = _jobs(options, workload, seed_frames, sam_checkpoint, clip_model)
    with tempfile.TemporaryDirectory(prefix="promptbox-bench-") as scratch:
        results = {key: _run_worker(job, Path(scratch), options.random_weights) for key, job in jobs.items()}
        return _summarise(options, workload, results, seed_frames, Path(scratch))


def _jobs(options: BenchOptions, workload: Workload, seed_frames: int, sam_checkpoint: str | None,
          clip_model: str) -> dict[str, dict]:
    frames = [{"path": f.path, "command": f.command, "label": f.label} for f in workload.frames]
    common = {
        "size": workload.size,
        "thresholds": options.thresholds,
        "locator": {
            "sam_checkpoint": sam_checkpoint,
            "clip_model": clip_model,
            "device": options.device,
            "threads": options.threads,
            "encoder_backend": options.encoder_backend,
            "points_per_side": options.points_per_side,
            "amg": dict(options.amg),
            "fast_fallback": options.fast_fallback,
            "fast_map": options.fast_map,
            "random_weights": options.random_weights,
        },
        "agreement_frames": seed_frames,
    }
    jobs: dict[str, dict] = {}
    for matching in options.matching or (None,):
        for mode in MODES[1:]:
            key = mode if matching is None else f"{mode}[{matching}]"
            repeats = options.exact_repeats if mode == "exact" else options.repeats
            # The decoder comparison once, in exact mode's process, after its peak RSS was read.
            decoder = options.decoder_prompts if mode == "exact" and not jobs else 0
            jobs[key] = {**common, "key": key, "mode": mode, "matching": matching, "frames": frames,
                         "repeats": repeats, "decoder_prompts": decoder}
    if seed_frames:  # last: it is the slowest, and every promptbox mode is measured even if it is stopped
        jobs["seed"] = {**common, "key": "seed", "mode": "seed", "matching": None, "frames": frames[:seed_frames],
                        "repeats": 1, "decoder_prompts": 0}
    return jobs


def _run_worker(job: dict, scratch: Path, random_weights: bool) -> dict:
    job = {**job, "agreement_dir": str(scratch)}
    job_path, out_path = scratch / f"{job['key']}.job.json", scratch / f"{job['key']}.out.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the worker imports this promptbox, not another
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    if random_weights:
        # Random means random: no checkpoint in the weights dir or the HF cache may be picked up instead.
        env["PROMPTBOX_WEIGHTS_DIR"] = str(scratch / "weights")
        env["HF_HUB_CACHE"] = str(scratch / "hf-cache")
        env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    print(f"bench: {job['key']} in its own process ({len(job['frames'])} frames x {job['repeats']})",
          file=sys.stderr, flush=True)
    # The worker's stdout joins stderr: stdout is the report's (--json), and progress belongs with the log.
    process = subprocess.Popen([sys.executable, "-m", WORKER, str(job_path), str(out_path)], env=env,
                               stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno())
    returncode = process.wait()
    if returncode != 0 or not out_path.is_file():
        raise WorkerError(f"mode {job['key']}: its worker process exited with status {returncode}; its output "
                          "above says why")
    result = json.loads(out_path.read_text(encoding="utf-8"))
    result["spawned_pid"] = process.pid  # the process this bench started; the worker reports its own pid too
    return result


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p95 (linear interpolation between samples, numpy's default), min, max and the sample count."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "min": round(float(array.min()), 2),
        "max": round(float(array.max()), 2),
        "n": int(array.size),
    }


def _summarise(options: BenchOptions, workload: Workload, results: dict[str, dict], seed_frames: int,
               scratch: Path) -> dict:
    any_result = next(iter(results.values()))
    seed = results.get("seed")
    modes = {}
    for key, result in results.items():
        modes[key] = _mode_summary(key, result, seed, seed_frames, scratch)
    return {
        "config": {
            "workload": workload.to_dict(),
            "frames": len(workload.frames),
            "device": options.device,
            "threads": any_result["threads"],
            "cores": os.cpu_count(),
            "cpu": _cpu_name(),
            "encoder_backend": options.encoder_backend,
            "thresholds": any_result["thresholds"],
            "amg": any_result["amg"],
            "fast_points": any_result["fast_points"],
            "fast_fallback": options.fast_fallback,
            "fast_map": fast_map_on(options.fast_map, options.device),  # "auto" as the device resolves it
            "repeats": {"fast": options.repeats, "exact": options.exact_repeats, "seed": 1},
            "seed_frames": seed_frames,
            "random_weights": any_result["random_weights"],
            "weights_tag": any_result["weights_tag"],
            "weights_label": weights_label(any_result["random_weights"], any_result["weights_tag"]),
            "models": any_result["models"],
            "matching": list(options.matching),
            "bench_pid": os.getpid(),
            "python": platform.python_version(),
        },
        "modes": modes,
        "decoder_ms_per_prompt": next((r["decoder_ms_per_prompt"] for r in results.values()
                                       if r["decoder_ms_per_prompt"]), None),
    }


def weights_label(random_weights: bool, tag: str) -> str:
    if random_weights:
        return "[RANDOM WEIGHTS] compute-only worst case: answers, mask counts and agreement mean nothing"
    return tag or "released weights"


def _mode_summary(key: str, result: dict, seed: dict | None, seed_frames: int, scratch: Path) -> dict:
    samples = result["samples"]
    names = list(dict.fromkeys(name for s in samples for name in s["timings_ms"]))
    stages = {name: percentiles([s["timings_ms"][name] for s in samples if name in s["timings_ms"]])
              for name in names}
    counts = [f["mask_count"] for f in result["frames"]]
    label = MODE_LABELS[result["mode"]] + (f" [{result['matching']}]" if key != result["mode"] else "")
    out = {
        "label": label,
        "mode": result["mode"],
        "matching": result["matching"],
        "pid": result["pid"],
        "spawned_pid": result["spawned_pid"],
        "stages": stages,  # milliseconds
        "peak_rss_mb": result["peak_rss_mb"],
        "cuda_peak_mb": result["cuda_peak_mb"],
        "load_seconds": result["load_seconds"],
        "mask_counts": {"per_frame": counts, "min": min(counts), "median": float(np.median(counts)),
                        "max": max(counts)},
        "frames": result["frames"],
        # exact mode on a frame embedded beforehand (as the node's precompute_embedding does): the same runs less
        # their embedding stage, which is all that `prepare` takes out of a goal.
        "prepared_total": percentiles([s["timings_ms"]["total"] - s["timings_ms"].get("embedding", 0.0)
                                       for s in samples]) if result["mode"] == "exact" else None,
        # Fast-mode runs whose map prompts found nothing that passed, so exact mode's grid answered.
        "fallback_runs": sum(any(name.startswith("fallback") for name in s["timings_ms"]) for s in samples),
        "seed_frames_total_ms": None,
        "ratio_vs_seed": None,
        "speedup_vs_seed": None,
        "agreement": None,
    }
    if seed is None:
        return out
    # Ratios from this one run, on the frames the seed ran on only.
    own = float(np.median([s["timings_ms"]["total"] for s in samples if s["frame"] < seed_frames]))
    theirs = float(np.median([s["timings_ms"]["total"] for s in seed["samples"]]))
    out["seed_frames_total_ms"] = round(own, 2)
    out["ratio_vs_seed"] = round(own / theirs, 4)
    out["speedup_vs_seed"] = round(theirs / own, 2)
    ious, matched = [], []
    for index in range(seed_frames):
        mine, reference = result["frames"][index]["box_xyxy"], seed["frames"][index]["box_xyxy"]
        ious.append(None if mine is None or reference is None else round(box_iou(mine, reference), 4))
        from promptbox.bench.worker import load_masks

        matched.append(round(matched_fraction(load_masks(scratch / f"seed_{index}.npz"),
                                              load_masks(scratch / f"{key}_{index}.npz")), 4))
    known = [v for v in ious if v is not None]
    out["agreement"] = {
        "box_convention": "xyxy source-pixel edges",
        "chosen_box_iou": round(float(np.mean(known)), 4) if known else None,
        "chosen_box_iou_per_frame": ious,
        "seed_masks_matched": round(float(np.mean(matched)), 4),
        "match_iou": MATCH_IOU,
    }
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
