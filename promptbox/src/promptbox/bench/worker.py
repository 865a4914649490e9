"""One bench mode in a process of its own, so its peak RSS is its own: `python -m promptbox.bench.worker JOB OUT`.

JOB is a JSON file written by bench.runner (mode, frames, settings); OUT receives what was measured. Masks of the
first `agreement_frames` frames are written bit-packed beside it, for the agreement with the seed.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m promptbox.bench.worker JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    Path(args[1]).write_text(json.dumps(run_job(job)), encoding="utf-8")
    return 0


def run_job(job: dict) -> dict:
    import torch

    from promptbox.bench.modes import decoder_cost, run_once
    from promptbox.bench.workloads import load_frame
    from promptbox.command import parse
    from promptbox.config import AmgSettings, LocatorConfig
    from promptbox.locator import Locator

    mode, settings = job["mode"], job["locator"]
    overrides = {"matching": job["matching"]} if job.get("matching") else {}
    config = LocatorConfig(
        sam_checkpoint=settings["sam_checkpoint"],
        clip_model=settings["clip_model"],
        device=settings["device"],
        mode="fast" if mode.startswith("fast") else "exact",
        allow_random_weights=settings["random_weights"],
        threads=settings["threads"],
        encoder_backend="torch" if mode == "seed" else settings["encoder_backend"],
        amg=AmgSettings(points_per_side=settings["points_per_side"], **settings.get("amg", {})),
        fast_fallback=settings.get("fast_fallback", True),
        fast_map=settings.get("fast_map", "auto"),
    ).with_overrides(**overrides)
    locator = Locator(config)
    thresholds = job["thresholds"]
    if thresholds == "auto":
        thresholds = "zero" if locator.random_weights else "seed"
    proposer = locator.proposer
    if thresholds == "zero":  # random weights pass no threshold: keep every mask in play, the worst case
        proposer.settings = replace(proposer.settings, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        proposer.point_iou_floor = proposer.point_stability_floor = 0.0
    device = settings["device"]
    locator.warm_up()  # lazy initialisation is the first goal's cost, not any frame's
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    size = tuple(job["size"]) if job["size"] else None
    agreement_dir = Path(job["agreement_dir"])
    samples, frames = [], []
    image = None
    for index, frame in enumerate(job["frames"]):
        image = load_frame(frame["path"], size)
        phrase = parse(frame["command"]).phrase
        text = locator.matcher.encode_text(phrase)
        run = None
        for repeat in range(job["repeats"]):
            run = run_once(mode, locator, image, frame["command"], text)
            samples.append({"frame": index, "repeat": repeat, "timings_ms": run.timings_ms})
            print(f"bench {job['key']}: {frame['label']} run {repeat + 1}/{job['repeats']} "
                  f"{run.timings_ms['total'] / 1000:.2f} s, {len(run.proposals)} masks", file=sys.stderr, flush=True)
        assert run is not None
        frames.append({
            "label": frame["label"],
            "command": frame["command"],
            "phrase": phrase,
            "mask_count": len(run.proposals),
            "prompts_decoded": getattr(run.proposals, "prompts_decoded", None),
            "box_xyxy": None if run.box_xyxy is None else [round(v, 2) for v in run.box_xyxy],
            "found": run.found,
        })
        if index < job["agreement_frames"]:
            masks = run.proposals.masks
            height, width = masks.frame_size
            # The file's layout is (N, H, W) packed along W, filled one full-frame mask at a time.
            packed = np.zeros((len(masks), height, -(-width // 8)), np.uint8)
            for i in range(len(masks)):
                packed[i] = np.packbits(masks.full(i), axis=-1)
            np.savez_compressed(agreement_dir / f"{job['key']}_{index}.npz", packed=packed,
                                shape=np.array(masks.shape))
    # Read before the decoder comparison, which builds upstream's predictor: the peak is the mode's alone.
    peak_mb = peak_rss_mb()
    cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    decoder = None
    if job["decoder_prompts"] > 0 and image is not None:
        decoder = decoder_cost(proposer, image, job["decoder_prompts"])
    return {
        "key": job["key"],
        "mode": mode,
        "matching": getattr(locator.config, "matching", None),
        "pid": os.getpid(),
        "peak_rss_mb": round(peak_mb, 1),
        "cuda_peak_mb": None if cuda_peak_mb is None else round(cuda_peak_mb, 1),
        "load_seconds": round(locator.load_seconds, 3),
        "random_weights": locator.random_weights,
        "weights_tag": locator.weights_tag,
        "models": locator.describe(),
        "thresholds": thresholds,
        "amg": asdict(proposer.settings),
        "fast_points": config.fast_points,
        "threads": torch.get_num_threads(),
        "samples": samples,
        "frames": frames,
        "decoder_ms_per_prompt": decoder,
        "finished_at": time.time(),
    }


def load_masks(path: Path) -> np.ndarray:
    """The (N, H, W) bool masks a worker wrote with `np.packbits`."""
    with np.load(path) as data:
        shape = tuple(int(v) for v in data["shape"])
        return np.unpackbits(data["packed"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)


def peak_rss_mb() -> float:
    """This process's own peak resident memory.

    On Linux `ru_maxrss` keeps the high-water mark of the address space that exec replaced, so a worker started
    from a larger process (a test session holding models) would report its parent's peak. `VmHWM` belongs to the
    worker's own address space.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


if __name__ == "__main__":
    sys.exit(main())
