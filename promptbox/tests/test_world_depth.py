"""The world's depth camera: a table plane at a fixed distance, objects as slabs of their class's height, the files
`promptbox world generate` writes for them, and the 3D truth that `promptbox eval` measures against."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from promptbox.camera import from_camera_info, read_camera_info
from promptbox.depth import Target3D, target_from_depth
from promptbox.evaluation.dataset import load_dataset
from promptbox.world import CLASSES, generate_scene, write_dataset
from promptbox.world.depth import HEIGHTS_M, TABLE_DISTANCE_M, scene_depth_mm, world_intrinsics

SIZE = (160, 120)


def test_the_camera_sees_a_60_degree_wide_table_from_80_cm() -> None:
    camera = world_intrinsics(640, 480)
    assert camera.fx == camera.fy and (camera.cx, camera.cy) == (319.5, 239.5) and not camera.distorted
    # The outer pixel edges (-0.5 and 639.5) at the table: 2 * 0.8 m * tan(30 deg) = 0.924 m apart.
    ends = camera.back_project(np.array([-0.5, 639.5]), np.array([239.5, 239.5]), np.array([0.8, 0.8]))
    assert ends[1, 0] - ends[0, 0] == pytest.approx(2 * 0.8 * math.tan(math.radians(30)), abs=1e-9)
    assert world_intrinsics(320, 240).fx == pytest.approx(camera.fx / 2)  # the same view at half the pixels


def test_every_class_has_a_plausible_whole_millimetre_height() -> None:
    assert set(HEIGHTS_M) == set(CLASSES)
    for cls, height in HEIGHTS_M.items():
        assert 0.005 <= height <= 0.15, cls
        assert round(height * 1000) == pytest.approx(height * 1000, abs=1e-9), cls


@pytest.mark.parametrize("index", [0, 1, 2])
def test_depth_is_the_table_plane_plus_each_objects_height(index: int) -> None:
    scene = generate_scene(5, index, SIZE)
    depth = scene_depth_mm(scene)
    assert depth.dtype == np.uint16 and depth.shape == (SIZE[1], SIZE[0])
    assert (depth[scene.table_mask] == 800).all() and scene.table_mask.any()
    for obj in scene.objects:
        assert (depth[obj.mask] == 800 - round(HEIGHTS_M[obj.cls] * 1000)).all(), obj.cls
    assert np.array_equal(depth, scene_depth_mm(generate_scene(5, index, SIZE)))  # a pure function of the scene
    assert len(np.unique(depth)) >= 2


def test_generate_writes_depth_camera_info_and_truth_centroids(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "w", 2, 4, SIZE)
    camera = from_camera_info(read_camera_info(out / "camera_info.json"), rectified=False)
    assert camera == world_intrinsics(*SIZE)
    assert from_camera_info(read_camera_info(out / "camera_info.json"), rectified=True).fx == camera.fx
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    tops = {round(TABLE_DISTANCE_M - h, 6) for h in HEIGHTS_M.values()}
    checked = 0
    for record in records:
        depth = cv2.imread(str(out / record["depth"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(depth, scene_depth_mm(generate_scene(4, record["scene"], SIZE)))
        assert record["camera_info"] == "camera_info.json"
        assert len(record["centroids_3d"]) == len(record["boxes"])
        for (x0, y0, x1, y1), centroid in zip(record["boxes"], record["centroids_3d"], strict=True):
            assert round(centroid[2], 6) in tops
            u, v = camera.project(np.array(centroid))[0]
            assert x0 - 0.5 <= u <= x1 - 0.5 and y0 - 0.5 <= v <= y1 - 0.5  # inside its box (pixel centres)
        if "mask" in record:
            # The exact mask over the written depth gives the written truth: files, camera and truth agree.
            mask = cv2.imread(str(out / record["mask"]), cv2.IMREAD_UNCHANGED) > 0
            target = target_from_depth(mask, depth, "16UC1", camera)
            assert isinstance(target, Target3D)
            assert np.allclose(target.centroid_m, record["centroids_3d"][0], atol=1e-4)
            checked += 1
    assert checked >= 5
    dataset = load_dataset(out)
    assert all(q.depth and q.camera_info and len(q.centroids_3d) == len(q.boxes) for q in dataset.queries)
