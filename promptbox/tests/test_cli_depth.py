"""`promptbox locate --depth --camera-info`: the 3D target in the text and JSON answers, and refused depth input.

Runs on a small world folder (its depth and camera_info) with the world's exact masks standing in for MobileSAM and
the committed world CLIP, at --min-score 0 so something is always found."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from promptbox.camera import from_camera_info, read_camera_info
from promptbox.cli import main
from promptbox.world import write_dataset
from promptbox.world.depth import HEIGHTS_M, TABLE_DISTANCE_M

WORLD_CLIP = Path(__file__).resolve().parents[2] / "weights" / "world" / "world-clip"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("cli-depth") / "w", 1, 3, (160, 120))


def locate(world: Path, *extra: str) -> list[str]:
    return ["locate", str(world / "images/scene_0000.png"), "take the mug", "--world-masks", str(world),
            "--model", str(WORLD_CLIP), "--min-score", "0", *extra]


def test_json_and_text_carry_the_3d_target(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    depth = ["--depth", str(world / "depth/scene_0000.png"), "--camera-info", str(world / "camera_info.json")]
    assert main(locate(world, *depth, "--json")) == 0
    payload = json.loads(capsys.readouterr().out)
    target = payload["target_3d"]
    assert target["has_pose"] is True and target["intrinsics"] == "K" and target["valid_fraction"] == 1.0
    tops = {round(TABLE_DISTANCE_M - h, 3) for h in HEIGHTS_M.values()} | {TABLE_DISTANCE_M}
    assert round(target["centroid_m"][2], 3) in tops  # a world object's top (or the table), read in millimetres
    camera = from_camera_info(read_camera_info(world / "camera_info.json"), rectified=False)
    u, v = camera.project(np.array(target["centroid_m"]))[0]
    x0, y0, x1, y1 = payload["box_xyxy"]
    assert x0 - 0.5 <= u <= x1 - 0.5 and y0 - 0.5 <= v <= y1 - 0.5  # the 3D centre lies over the 2D answer
    assert all(size >= 0 for size in target["extent_m"]) and max(target["extent_m"][:2]) > 0.01

    assert main(locate(world, *depth, "--rectified")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "found 'mug'" in lines[0]
    assert lines[1].startswith("3D: centroid x=") and "camera optical frame, P" in lines[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--depth", "{w}/depth/scene_0000.png"], "--depth without --camera-info; accepted: --depth DEPTH"),
        (["--camera-info", "{w}/camera_info.json"], "--camera-info without --depth"),
        (["--rectified"], "--rectified applies to --depth and --camera-info"),
        (["--depth", "{w}/small.png", "--camera-info", "{w}/camera_info.json"], "is 80x60 but the image is 160x120"),
        (["--depth", "{w}/images/scene_0000.png", "--camera-info", "{w}/camera_info.json"],
         "holds 3-channel uint8 pixels; accepted: one channel of uint16 millimetres"),
        (["--depth", "{w}/depth/scene_0000.png", "--camera-info", "{w}/other_info.json"],
         "is for 320x240 but the image is 160x120"),
    ],
)
def test_bad_depth_input_exits_2_before_loading_models(world: Path, capsys: pytest.CaptureFixture[str],
                                                       args: list[str], message: str) -> None:
    cv2.imwrite(str(world / "small.png"), np.full((60, 80), 800, np.uint16))
    info = json.loads((world / "camera_info.json").read_text())
    (world / "other_info.json").write_text(json.dumps(info | {"width": 320, "height": 240}))
    argv = locate(world, *[a.format(w=world) for a in args])
    argv[argv.index("--model") + 1] = str(world / "no-such-model")  # a model load would fail differently
    assert main(argv) == 2
    assert message in capsys.readouterr().err
