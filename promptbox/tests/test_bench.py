"""`promptbox bench` on one tiny world scene with the committed world weights: every mode runs in a process of its
own, and what it reports (pids, peak RSS, mask counts, agreement, the table) is what happened. No timing asserts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from promptbox import bench
from promptbox.bench import workloads
from promptbox.bench.modes import MODE_LABELS, MODES

OPTIONS = bench.BenchOptions(scenes=1, size=(160, 120), points_per_side=2, repeats=1, exact_repeats=1,
                             seed_frames=1, decoder_prompts=0, threads=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[bench.BenchOptions, dict]:
    options = replace(OPTIONS, world_dir=str(tmp_path_factory.mktemp("bench-world")))
    return options, json.loads(json.dumps(bench.run(options)))  # it must be JSON as it is


def test_each_mode_runs_in_its_own_process(tiny):
    _, report = tiny
    assert set(report["modes"]) == set(MODES)
    pids = {name: mode["pid"] for name, mode in report["modes"].items()}
    assert len(set(pids.values())) == len(MODES), pids
    assert os.getpid() not in pids.values() and report["config"]["bench_pid"] == os.getpid()
    for name, mode in report["modes"].items():
        assert mode["pid"] == mode["spawned_pid"], name  # the process the bench started measured itself
        assert mode["peak_rss_mb"] > 100, name  # torch and the models, in that process
    rss = {mode["peak_rss_mb"] for mode in report["modes"].values()}
    assert len(rss) > 1  # four processes don't peak at the same KiB; one process read four times would



def test_a_workers_peak_memory_is_its_own_not_its_parents():
    """A worker started from a process holding much more (a test session with models loaded) reports its own
    peak. `ru_maxrss` would report the parent's: Linux keeps it across exec, and CI read 1282 MB for all four modes."""
    ballast = np.ones(1536 * 2**20, np.uint8)  # touched pages: the parent's resident set grows by 1.5 GiB
    code = "from promptbox.bench.worker import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    child_mb = float(out.stdout.strip())
    assert int(ballast[-1]) == 1
    assert 20 < child_mb < 1200, child_mb  # an interpreter with numpy and torch, far below the parent's 1.5 GiB

def test_mask_counts_are_what_the_proposer_produced(tiny):
    """Exact mode's and the seed's counts against MobileSAM run here, in this process, on the same frame."""
    from promptbox.config import AmgSettings, LocatorConfig
    from promptbox.locator import Locator

    options, report = tiny
    sam, clip = workloads.resolve_weights(None, None, False)
    locator = Locator(LocatorConfig(sam_checkpoint=sam, clip_model=clip,
                                    amg=AmgSettings(points_per_side=options.points_per_side)))
    frame = report["config"]["workload"]["frames"][0]
    image = workloads.load_frame(frame["path"], None)
    exact = len(locator.proposer.propose(locator.proposer.embed(image)))
    upstream = len(locator.proposer.propose_upstream(image))
    modes = report["modes"]
    assert modes["exact"]["mask_counts"]["per_frame"] == [exact]
    assert modes["seed"]["mask_counts"]["per_frame"] == [upstream]
    assert modes["fast"]["mask_counts"] == modes["fast_prepared"]["mask_counts"]  # same prompts, prepared or not
    for mode in modes.values():
        counts = mode["mask_counts"]
        assert counts["min"] <= counts["median"] <= counts["max"] and counts["per_frame"]


def test_report_fields_ratios_and_agreement(tiny):
    options, report = tiny
    config = report["config"]
    assert config["weights_tag"] == "[SYNTHETIC-WORLD WEIGHTS]" and not config["random_weights"]
    assert config["thresholds"] == "seed" and config["amg"]["points_per_side"] == 2 and config["threads"] == 1
    assert config["workload"]["size"] is None and "world: 1 scenes" in config["workload"]["label"]
    for name, mode in report["modes"].items():
        runs = 1 if name == "seed" else len(config["workload"]["frames"]) * options.repeats
        for stage, values in mode["stages"].items():
            assert values["min"] <= values["p50"] <= values["p95"] <= values["max"], (name, stage)
        assert mode["stages"]["total"]["n"] == runs, name
        assert mode["ratio_vs_seed"] > 0 and mode["speedup_vs_seed"] > 0
        assert mode["agreement"]["box_convention"] == "xyxy source-pixel edges"
        assert 0.0 <= mode["agreement"]["seed_masks_matched"] <= 1.0
    seed = report["modes"]["seed"]
    assert seed["ratio_vs_seed"] == 1.0 and seed["agreement"]["seed_masks_matched"] == 1.0
    if seed["frames"][0]["box_xyxy"] is not None:
        assert seed["agreement"]["chosen_box_iou"] == 1.0
    assert "prepare (not in total)" in report["modes"]["fast_prepared"]["stages"]
    for stage in ("embedding", "proposing", "matching"):
        assert stage in report["modes"]["exact"]["stages"]


def test_table_names_modes_weights_and_counts(tiny):
    _, report = tiny
    table = bench.format_table(report)
    assert "weights: [SYNTHETIC-WORLD WEIGHTS]" in table
    assert "[RANDOM WEIGHTS]" not in table
    for name, mode in report["modes"].items():
        row = next(line for line in table.splitlines() if line.startswith(MODE_LABELS[name]))
        counts = mode["mask_counts"]
        assert f"{counts['min']}/{counts['median']:g}/{counts['max']}" in row
        assert str(mode["pid"]) in row
    random_report = json.loads(json.dumps(report))
    random_report["config"].update(random_weights=True, weights_label="[RANDOM WEIGHTS] compute-only worst case")
    assert "[RANDOM WEIGHTS]: these figures are the compute-only worst case" in bench.format_table(random_report)


def test_exact_mode_reports_its_prepared_frame_and_the_prompts_it_decoded(tiny):
    options, report = tiny
    exact = report["modes"]["exact"]
    total, embedding = exact["stages"]["total"], exact["stages"]["embedding"]
    assert total["n"] == 1  # one frame, one run: the prepared figure is that run less its embedding stage
    assert exact["prepared_total"]["p50"] == pytest.approx(total["p50"] - embedding["p50"], abs=0.02)
    assert report["modes"]["fast"]["prepared_total"] is None  # fast mode has a prepared mode of its own
    decoded = [frame["prompts_decoded"] for frame in exact["frames"]]
    assert all(1 <= d <= options.points_per_side ** 2 for d in decoded)
    table = bench.format_table(report)
    assert "same runs, frame prepared" in table
    grid = options.points_per_side ** 2
    assert f"point prompts decoded per frame {decoded} of {grid} (coarse to fine, covered points skipped)" in table


def test_fast_modes_count_the_runs_exact_modes_grid_answered(tiny):
    _, report = tiny
    table = bench.format_table(report)
    for name in ("fast", "fast_prepared"):
        mode = report["modes"][name]
        # The count is of runs whose own timings carry the fallback's stages (the worker records each run's).
        assert 0 <= mode["fallback_runs"] <= mode["stages"]["total"]["n"]
        fell_back = "fallback proposing" in mode["stages"]
        assert (mode["fallback_runs"] > 0) == fell_back
        assert (f"{MODE_LABELS[name]}: exact mode's grid answered {mode['fallback_runs']} of "
                f"{mode['stages']['total']['n']} runs") in table
    assert report["config"]["fast_map"] == "tokens"  # the default "auto", as a CPU resolves it
    assert "(the token map's prompts found nothing that passed" in table
    off = json.loads(json.dumps(report))
    off["config"]["fast_fallback"] = False
    assert "no fallback (--no-fast-fallback)" in bench.format_table(off)


def test_the_decoder_comparison_times_each_part_per_prompt():
    """The exact worker's per-prompt decoder comparison (`--decoder-prompts`, which the tiny runs above skip): upstream
    against the shared-work decoder, and the frame's shared image side timed uncached."""
    from promptbox import weights
    from promptbox.bench.modes import decoder_cost
    from promptbox.config import AmgSettings
    from promptbox.proposals import MaskProposer
    from promptbox.world.scene import generate_scene

    sam_path, _ = workloads.resolve_weights(None, None, False)
    sam, random = weights.load_sam(sam_path, "cpu", False)
    assert not random
    cost = decoder_cost(MaskProposer(sam, AmgSettings(), "cpu"), generate_scene(20261124, 0, (160, 120)).image, 4)
    assert cost["prompts"] == 4
    for part in ("upstream", "promptbox_transformer", "promptbox_masks", "promptbox_shared_per_frame"):
        assert cost[part] > 0, (part, cost)
