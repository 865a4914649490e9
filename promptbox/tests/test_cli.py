"""`promptbox locate` end to end: exit codes, JSON, the annotated image, and the random-weights marking."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from promptbox.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "promptbox" / "data" / "coffee.png"
# Random weights predict low IoUs: zero thresholds keep masks, a 2x2 grid keeps it quick.
SMALL = ["--amg", "points_per_side=2", "--amg", "pred_iou_thresh=0", "--amg", "stability_score_thresh=0"]


@pytest.fixture()
def offline(no_weights, monkeypatch):
    """conftest's no-weights environment, also for subprocesses: their HF cache is empty and they stay offline."""
    monkeypatch.setenv("HF_HUB_CACHE", str(no_weights / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return no_weights


def test_random_weights_end_to_end_through_the_installed_entry_point(offline, tmp_path):
    out = tmp_path / "annotated.png"
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("promptbox")), "locate", str(SAMPLE), "take the coffee cup", "--json",
         "--random-weights", "--min-score", "0", "--out", str(out), *SMALL],
        capture_output=True, text=True, env=os.environ.copy(), timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    payload = json.loads(completed.stdout)
    assert payload["random_weights"] is True
    assert payload["found"] is True and payload["phrase"] == "coffee cup"
    x0, y0, x1, y1 = payload["box_xyxy"]
    height, width = cv2.imread(str(SAMPLE)).shape[:2]
    assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
    assert payload["image"] == {"path": str(SAMPLE), "width": width, "height": height}
    assert {"embedding", "proposing", "matching", "selecting", "total"} <= set(payload["timings_ms"])
    annotated = cv2.imread(str(out))
    assert annotated is not None and annotated.shape[:2] == (height, width)


def test_missing_weights_exit_2_and_say_how_to_get_them(offline, capsys):
    code = main(["locate", str(SAMPLE), "take the coffee cup", *SMALL])
    err = capsys.readouterr().err
    assert code == 2
    assert "mobile_sam.pt" in err and "PROMPTBOX_WEIGHTS_DIR" in err and "--random-weights" in err


def test_not_found_exits_3_and_the_text_output_is_marked(offline, capsys):
    code = main(["locate", str(SAMPLE), "take the coffee cup", "--random-weights", "--min-score", "1", *SMALL])
    out = capsys.readouterr().out
    assert code == 3
    assert out.startswith("[RANDOM WEIGHTS] not found 'coffee cup'")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["locate", "/nonexistent.png", "take the cup"], "image '/nonexistent.png' could not be read"),
        (["locate", str(SAMPLE), "please", "--random-weights"], "command"),
        (["locate", str(SAMPLE), "take the cup", "--device", "tpu", "--random-weights"], "device='tpu'"),
        (["locate", str(SAMPLE), "take the cup", "--min-score", "7", "--random-weights"], "min_score=7.0"),
        (["locate", str(SAMPLE), "take the cup", "--amg", "grid=3", "--random-weights"], "--amg 'grid=3'"),
        (["locate", str(SAMPLE), "take the cup", "--amg", "skip_covered_points=1", "--random-weights"],
         "'1' is not a bool; accepted: true, false"),
        (["locate", str(SAMPLE), "take the cup", "--shortlist-size", "0", "--random-weights"],
         "shortlist_size=0 must be at least 1"),
        (["locate", str(SAMPLE), "take the cup", "--encoder-backend", "tpu", "--random-weights"],
         "encoder_backend='tpu' is not supported; accepted: torch, onnx, onnx-int8"),
    ],
)
def test_input_errors_exit_2_with_a_message(offline, capsys, argv, message):
    assert main([*argv, *SMALL]) == 2
    assert message in capsys.readouterr().err


def test_checkpoints_given_by_path_are_not_marked_random(sam_checkpoint, clip_dir, capsys):
    code = main(["locate", str(SAMPLE), "take the coffee cup", "--json", "--min-score", "0",
                 "--sam-checkpoint", str(sam_checkpoint), "--model", str(clip_dir), *SMALL])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["random_weights"] is False


def test_amg_bool_settings_reach_the_config():
    from promptbox.cli import _amg_overrides

    assert _amg_overrides(["skip_covered_points=false"]) == {"amg_skip_covered_points": False}
    assert _amg_overrides(["skip_covered_points=True", "points_per_side=8"]) == {
        "amg_skip_covered_points": True, "amg_points_per_side": 8}


def test_encoder_backend_reaches_the_eval_config():
    from promptbox.evaluation.cli import _config, _eval_parser

    args = _eval_parser().parse_args(["/data", "--encoder-backend", "onnx-int8"])
    assert _config(args, "exact").encoder_backend == "onnx-int8"


def test_no_fast_fallback_reaches_the_eval_config():
    from promptbox.evaluation.cli import _config, _eval_parser

    assert _config(_eval_parser().parse_args(["/data"]), "fast").fast_fallback is True
    args = _eval_parser().parse_args(["/data", "--no-fast-fallback"])
    assert _config(args, "fast").fast_fallback is False


def test_no_fast_fallback_is_a_locate_option():
    from promptbox.cli import add_fast_fallback_argument

    parser = argparse.ArgumentParser()
    add_fast_fallback_argument(parser)
    assert parser.parse_args([]).fast_fallback is True
    assert parser.parse_args(["--no-fast-fallback"]).fast_fallback is False
