"""The bench's options, workloads and table, without models: bad input is named, commands come from where the
README says, and the table says which weights made it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from promptbox import bench
from promptbox.bench import options as bench_options
from promptbox.bench import runner, workloads
from promptbox.bench.modes import box_iou, matched_fraction


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def _write_image(path: Path, size=(40, 30)) -> Path:
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), 128, np.uint8))
    return path


@pytest.mark.parametrize(("argv", "named"), [
    (["--size", "tiny"], "--size 'tiny'"),
    (["--repeats", "0"], "--repeats 0"),
    (["--scenes", "0"], "--scenes 0"),
    (["--seed-frames", "0"], "--seed-frames 0"),
    (["--random-weights", "--sam-checkpoint", "x.pt"], "--sam-checkpoint 'x.pt'"),
])
def test_bad_options_are_named_with_what_is_accepted(argv, named, capsys):
    assert bench.run_from_args(_parse(argv)) == 2
    err = capsys.readouterr().err
    assert named in err and "accepted" in err


def test_images_dir_errors_name_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert bench.run_from_args(_parse(["--images", str(missing)])) == 2
    err = capsys.readouterr().err
    assert f"--images {str(missing)!r}: not a folder" in err and ".png" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"--images .*empty.*no images in it"):
        workloads.images_workload(str(empty), (64, 48), None)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "frame.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"frame\.png' could not be read"):
        workloads.images_workload(str(broken), (64, 48), None)


def test_images_commands_one_for_all_or_from_labels(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("b.jpg", "a.png"):
        _write_image(plain / name)
    work = workloads.images_workload(str(plain), (64, 48), None)
    assert [(f.label, f.command) for f in work.frames] == [("a.png", workloads.DEFAULT_COMMAND),
                                                           ("b.jpg", workloads.DEFAULT_COMMAND)]
    assert {f.command for f in workloads.images_workload(str(plain), None, "take the pen").frames} == {"take the pen"}
    labelled = tmp_path / "labelled"
    (labelled / "images").mkdir(parents=True)
    _write_image(labelled / "images" / "one.png")
    _write_image(labelled / "images" / "two.png")
    lines = [{"image": "images/one.png", "command": "take the mug"},
             {"image": "images/one.png", "command": "take the bowl"},
             {"image": "images/two.png", "command": "take the pen"}]
    (labelled / "labels.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    work = workloads.images_workload(str(labelled), (64, 48), None)
    assert [(f.label, f.command) for f in work.frames] == [("one.png", "take the mug"), ("two.png", "take the pen")]
    assert workloads.load_frame(work.frames[0].path, (64, 48)).shape == (48, 64, 3)


def test_world_workload_is_drawn_once_and_takes_each_scenes_class_query(tmp_path):
    work = workloads.world_workload(2, 5, (160, 120), None, str(tmp_path / "world"))
    assert len(work.frames) == 2 and "seed 5" in work.label and "160x120" in work.label
    labels = [json.loads(line) for line in (tmp_path / "world" / "labels.jsonl").read_text().splitlines()]
    for frame in work.frames:
        first_class = next(r["command"] for r in labels if Path(r["image"]).name == frame.label
                           and "class" in r["tags"])
        assert frame.command == first_class
    stamp = (tmp_path / "world" / "images" / "scene_0000.png").stat().st_mtime_ns
    assert workloads.world_workload(2, 5, (160, 120), None, str(tmp_path / "world")) == work
    assert (tmp_path / "world" / "images" / "scene_0000.png").stat().st_mtime_ns == stamp  # reused, not redrawn


def test_weights_default_to_the_world_and_random_means_random():
    sam, clip = workloads.resolve_weights(None, None, False)
    assert sam.endswith("weights/world/mobile_sam.pt") and clip.endswith("weights/world/world-clip")
    assert workloads.resolve_weights(None, None, True) == (None, "tinyclip-61m")
    assert runner.weights_label(True, "[RANDOM WEIGHTS]").startswith("[RANDOM WEIGHTS] compute-only worst case")
    assert runner.weights_label(False, "[SYNTHETIC-WORLD WEIGHTS]") == "[SYNTHETIC-WORLD WEIGHTS]"


def test_matching_values_follow_the_config():
    from dataclasses import fields

    from promptbox.config import LocatorConfig

    assert bench_options.parse_matching(None) == ()
    if "matching" not in {f.name for f in fields(LocatorConfig)}:
        with pytest.raises(ValueError, match="no LocatorConfig.matching"):
            bench_options.parse_matching("crops")
        return
    value = LocatorConfig().matching
    assert bench_options.parse_matching(value) == (value,)
    with pytest.raises(ValueError, match=r"--matching 'psychic': 'psychic' is not a matching; accepted"):
        bench_options.parse_matching("psychic")


def test_helpers():
    assert runner.percentiles([1.0, 2.0, 3.0, 4.0, 100.0]) == {"p50": 3.0, "p95": 80.8, "min": 1.0, "max": 100.0,
                                                              "n": 5}
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4] = True
    masks[1, 4:] = True
    assert matched_fraction(masks, masks[:1]) == 0.5
    assert matched_fraction(masks[:0], masks) == 1.0


def test_promptbox_bench_hands_every_option_to_the_bench(monkeypatch, capsys):
    """`promptbox bench --device ... --command ...`: options before any positional reach the bench's parser."""
    from promptbox.cli import main

    seen = []
    monkeypatch.setattr(bench, "run", lambda options: seen.append(options) or {"stub": True})
    argv = ["bench", "--device", "cpu", "--command", "grab the mug", "--skip-seed", "--size", "160x120",
            "--images", "/some/dir", "--repeats", "2", "--exact-repeats", "1", "--seed-frames", "2", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {"stub": True}
    got = seen[0]
    assert (got.device, got.command, got.skip_seed, got.size, got.images) == (
        "cpu", "grab the mug", True, (160, 120), "/some/dir")
    assert (got.repeats, got.exact_repeats, got.seed_frames) == (2, 1, 2)


def test_amg_settings_reach_the_workers_and_the_grid_keeps_its_own_option(tmp_path):
    options = bench_options.options_from_args(_parse(["--amg", "skip_covered_points=false"]))
    assert options.amg == (("skip_covered_points", False),)
    workload = workloads.Workload(label="x", frames=(), size=(160, 120))
    jobs = runner._jobs(options, workload, 0, None, "m")
    assert all(job["locator"]["amg"] == {"skip_covered_points": False} for job in jobs.values())
    with pytest.raises(ValueError, match="--amg points_per_side: accepted: --points-per-side N"):
        bench_options.options_from_args(_parse(["--amg", "points_per_side=8"]))
    with pytest.raises(ValueError, match="'maybe' is not a bool"):
        bench_options.options_from_args(_parse(["--amg", "skip_covered_points=maybe"]))


def test_no_fast_fallback_reaches_the_workers():
    workload = workloads.Workload(label="x", frames=(), size=(160, 120))
    default = runner._jobs(bench_options.options_from_args(_parse([])), workload, 0, None, "m")
    off = runner._jobs(bench_options.options_from_args(_parse(["--no-fast-fallback"])), workload, 0, None, "m")
    assert all(job["locator"]["fast_fallback"] is True for job in default.values())
    assert all(job["locator"]["fast_fallback"] is False for job in off.values())


def test_fast_map_reaches_the_workers_and_the_summary():
    workload = workloads.Workload(label="x", frames=(), size=(160, 120))
    default = runner._jobs(bench_options.options_from_args(_parse([])), workload, 0, None, "m")
    windows = runner._jobs(bench_options.options_from_args(_parse(["--fast-map", "windows"])), workload, 0, None, "m")
    assert all(job["locator"]["fast_map"] == "auto" for job in default.values())  # the worker's device resolves it
    assert all(job["locator"]["fast_map"] == "windows" for job in windows.values())
    with pytest.raises(SystemExit):
        _parse(["--fast-map", "grid"])
