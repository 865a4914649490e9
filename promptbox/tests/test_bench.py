"""`promptbox bench` on a tiny configuration: it runs every mode and reports what it promises. No timing asserts."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from promptbox import bench

MODES = ("seed", "exact", "fast", "fast_prepared")


@pytest.fixture(scope="module")
def tiny_report(sam_checkpoint, clip_dir) -> dict:
    options = bench.BenchOptions(
        sam_checkpoint=str(sam_checkpoint),
        clip_model=str(clip_dir),
        size=(160, 120),
        points_per_side=2,
        repeats=1,
        thresholds="zero",
        decoder_prompts=4,
    )
    return json.loads(json.dumps(bench.run(options)))  # it must be JSON as it is


def test_bench_reports_every_mode_with_its_fields(tiny_report):
    report = tiny_report
    assert set(report["modes"]) == set(MODES)
    config = report["config"]
    assert config["size"] == [160, 120] and config["amg"]["points_per_side"] == 2
    assert config["thresholds"] == "zero"
    assert config["amg"]["pred_iou_thresh"] == 0.0 and config["amg"]["stability_score_thresh"] == 0.0
    for name, mode in report["modes"].items():
        stages = mode["stages"]
        assert "total" in stages, name
        for stage in stages.values():
            assert set(stage) == {"median", "min", "max"}
            assert stage["min"] <= stage["median"] <= stage["max"]
        assert mode["ratio_vs_seed"] > 0 and mode["speedup_vs_seed"] > 0
        assert mode["peak_rss_mb"] > 0
        assert isinstance(mode["mask_count"], int) and mode["mask_count"] >= 0
        agreement = mode["agreement"]
        assert set(agreement) >= {"chosen_box_iou", "seed_masks_matched"}
        assert 0.0 <= agreement["seed_masks_matched"] <= 1.0
    seed = report["modes"]["seed"]
    assert seed["ratio_vs_seed"] == 1.0 and seed["agreement"]["seed_masks_matched"] == 1.0
    # Exact mode makes upstream's masks: every one of the seed's is matched.
    assert report["modes"]["exact"]["agreement"]["seed_masks_matched"] == 1.0
    assert report["modes"]["exact"]["mask_count"] == seed["mask_count"] > 0
    for stage in ("embedding", "proposing", "matching"):
        assert stage in report["modes"]["exact"]["stages"]
    assert "prepare (not in total)" in report["modes"]["fast_prepared"]["stages"]
    decoder = report["decoder_ms_per_prompt"]
    assert decoder["prompts"] == 4 and decoder["upstream"] > 0 and decoder["promptbox_total"] > 0


def test_bench_table_names_the_modes(tiny_report):
    report = tiny_report
    table = bench.format_table(report)
    for mode in report["modes"].values():
        assert mode["label"] in table
    assert "decoder per point prompt" in table


def test_run_from_args_prints_the_report(tiny_report, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(bench, "run", lambda options: seen.append(options) or tiny_report)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--size", "160x120", "--points-per-side", "2", "--repeats", "1", "--json"])
    assert bench.run_from_args(args) == 0
    assert json.loads(capsys.readouterr().out) == tiny_report
    assert seen[0].size == (160, 120) and seen[0].points_per_side == 2 and seen[0].repeats == 1
    assert bench.run_from_args(parser.parse_args(["--size", "tiny"])) == 2  # a usage error, said on stderr
    assert "WxH" in capsys.readouterr().err


def test_promptbox_bench_hands_every_option_to_the_bench(tiny_report, monkeypatch, capsys):
    """`promptbox bench --device ... --command ...`: options before any positional must reach the bench's parser."""
    from promptbox.cli import main

    seen = []
    monkeypatch.setattr(bench, "run", lambda options: seen.append(options) or tiny_report)
    argv = ["bench", "--device", "cpu", "--command", "grab the mug", "--skip-seed", "--size", "160x120", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == tiny_report
    got = seen[0]
    assert (got.device, got.command, got.skip_seed, got.size) == ("cpu", "grab the mug", True, (160, 120))


def test_helpers():
    assert bench.parse_size("640x480") == (640, 480) and bench.parse_size("orig") is None
    with pytest.raises(ValueError, match="WxH"):
        bench.parse_size("640")
    assert bench.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4] = True
    masks[1, 4:] = True
    assert bench.matched_fraction(masks, masks[:1]) == 0.5
    assert bench.matched_fraction(masks[:0], masks) == 1.0
    image, label = bench.load_image(None, (64, 48))
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and "coffee" in label
