"""The eval's 3D side on a hand-built RGB-D set: every number is counted by hand, and a set without depth is unchanged.

Camera: fx = fy = 100, cx = cy = 49.5, 100x100 frames; a pixel column u sits at x = (u - 49.5) / 100 * z.
Depth of d.png (millimetres): table 1000, rows/cols 10..49 at 500 (the mug), rows/cols 60..99 at 500 (the cup), and
rows 0..29 x cols 70..99 zero (a hole: no reading).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from eval_support import Oracle, write_image, write_labels

from promptbox.camera import Intrinsics
from promptbox.evaluation.dataset import DatasetError, load_dataset
from promptbox.evaluation.metrics import CENTROID_CLOSE_M, PoseJudgement, centroid_error, judge
from promptbox.evaluation.report import build_report, format_table, report_dict
from promptbox.evaluation.runner import run_eval

CAMERA = Intrinsics(fx=100.0, fy=100.0, cx=49.5, cy=49.5, width=100, height=100)


def box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((100, 100), bool)
    mask[y0:y1, x0:x1] = True
    return mask


# command -> (acceptable boxes, truth centroids, tags, the oracle's box, the oracle's mask)
HAND = {
    # mask cols/rows 10..49: mean 29.5 -> x = y = (29.5 - 49.5) / 100 * 0.5 = -0.1, z = 0.5; truth z 0.52: 2 cm off
    "take the mug": ([[10, 10, 50, 50]], [[-0.1, -0.1, 0.52]], (10, 10, 50, 50), box_mask(10, 10, 50, 50)),
    # matches the SECOND box (IoU 0.75); mask cols 60..99 (mean 79.5 -> x 0.15), rows 60..89 (mean 74.5 -> y 0.125);
    # truth [0.15, 0.125, 0.503]: 3 mm off
    "take the cup": ([[0, 0, 20, 20], [60, 60, 100, 100]], [[0.0, 0.0, 1.0], [0.15, 0.125, 0.503]],
                     (60, 60, 100, 90), box_mask(60, 60, 100, 90)),
    # a wrong answer (IoU 0): it gets a pose (table depth), but no centroid error
    "take the spoon": ([[0, 0, 40, 40]], [[-0.3, -0.3, 1.0]], (52, 60, 58, 100), box_mask(52, 60, 58, 100)),
    # right box, but its mask lies in the hole: no pose
    "take the plate": ([[70, 0, 100, 30]], [[0.35, -0.35, 1.0]], (70, 0, 100, 30), box_mask(70, 0, 100, 30)),
    "take the fork": ([[0, 60, 10, 70]], [[-0.45, 0.15, 1.0]], None, None),  # not found: no 3D at all
    "take the knife": ([], [], (0, 0, 10, 10), box_mask(0, 0, 10, 10)),  # absent, answered: no 3D either
}


def write_rgbd(root: Path) -> Path:
    write_image(root / "d.png", 100, 100, 120)
    write_image(root / "plain.png", 100, 100, 160)
    depth = np.full((100, 100), 1000, np.uint16)
    depth[10:50, 10:50] = 500
    depth[60:100, 60:100] = 500
    depth[0:30, 70:100] = 0
    cv2.imwrite(str(root / "depth_d.png"), depth)
    (root / "info.json").write_text(json.dumps(CAMERA.to_camera_info()))
    records = [{"image": "d.png", "command": command, "boxes": boxes, "tags": ["class"], "depth": "depth_d.png",
                "camera_info": "info.json", "centroids_3d": centroids}
               for command, (boxes, centroids, _, _) in HAND.items()]
    # A frame without depth: its right answer has no 3D judgement and changes no 3D number.
    records.append({"image": "plain.png", "command": "take the bowl", "boxes": [[0, 0, 50, 50]], "tags": ["class"]})
    return write_labels(root, records)


def rgbd_oracle() -> Oracle:
    answers = {command: box for command, (_, _, box, _) in HAND.items()} | {"take the bowl": (0, 0, 50, 50)}
    masks = {command: mask for command, (_, _, _, mask) in HAND.items() if mask is not None}
    masks["take the bowl"] = box_mask(0, 0, 50, 50)
    return Oracle(lambda image, command, mode: answers[command], masks=masks)


def test_pose_rate_and_centroid_error_counted_by_hand(tmp_path: Path) -> None:
    dataset = load_dataset(write_rgbd(tmp_path / "rgbd"))
    run = run_eval(rgbd_oracle(), dataset, ["exact"])
    by_command = {r.query.command: r for r in run.results}
    assert by_command["take the mug"].target_3d.centroid_m == pytest.approx((-0.1, -0.1, 0.5))
    assert by_command["take the cup"].target_3d.centroid_m == pytest.approx((0.15, 0.125, 0.5))
    assert "depth missing under the mask" in by_command["take the plate"].target_3d.reason
    assert by_command["take the fork"].target_3d is None and by_command["take the knife"].target_3d is None
    assert by_command["take the bowl"].target_3d is None and by_command["take the bowl"].outcome.pose is None

    m = build_report(run).per_mode["exact"]["all"].metrics
    # Found on present queries in the depth frame: mug, cup, spoon (pose), plate (no pose) -> 3/4.
    assert (m.pose_rate.hits, m.pose_rate.total) == (3, 4)
    # Correct with a pose: mug 0.02 m, cup 0.003 m (the spoon is the wrong object, the plate has no pose).
    assert m.centroid_error_m.count == 2
    assert m.centroid_error_m.value == pytest.approx((0.02 + 0.003) / 2, abs=1e-6)
    assert (m.centroid_close_rate.hits, m.centroid_close_rate.total) == (1, 2)


def test_the_report_shows_3d_rows_only_for_depth_sets(tmp_path: Path) -> None:
    report = build_report(run_eval(rgbd_oracle(), load_dataset(write_rgbd(tmp_path / "rgbd")), ["exact"]))
    table = format_table(report)
    assert "found with a 3D pose" in table and "0.750  3/4" in table and "0.012  n=2" in table
    payload = report_dict(report)["modes"]["exact"]["all"]
    assert payload["pose_rate"] == {"value": 0.75, "hits": 3, "total": 4}
    assert payload["centroid_error_m"]["count"] == 2

    plain = tmp_path / "plain"
    write_image(plain / "a.png", 100, 100, 90)
    write_labels(plain, [{"image": "a.png", "command": "take the bowl", "boxes": [[0, 0, 50, 50]]}])
    oracle = Oracle(lambda image, command, mode: (0, 0, 50, 50), masks={"take the bowl": box_mask(0, 0, 50, 50)})
    plain_report = build_report(run_eval(oracle, load_dataset(plain), ["exact"]))
    assert "3D" not in format_table(plain_report)
    assert "pose_rate" not in report_dict(plain_report)["modes"]["exact"]["all"]


def test_judge_keeps_the_error_only_for_a_correct_answer() -> None:
    error = centroid_error((60, 60, 100, 90), (0.15, 0.125, 0.5), [(0, 0, 20, 20), (60, 60, 100, 100)],
                           [(0.0, 0.0, 1.0), (0.15, 0.125, 0.503)])
    assert error == pytest.approx(0.003)
    assert judge([(0, 0, 40, 40)], (0, 0, 40, 40), pose=PoseJudgement(True, 0.004)).pose.centroid_error_m == 0.004
    wrong = judge([(0, 0, 40, 40)], (52, 0, 90, 40), [(50, 0, 90, 40)], pose=PoseJudgement(True, 0.3))
    assert wrong.pose == PoseJudgement(True, None)
    assert judge([], (0, 0, 10, 10), pose=PoseJudgement(True)).pose is None  # absent: a false box has no 3D
    assert CENTROID_CLOSE_M == 0.01
    with pytest.raises(ValueError, match="2 truth boxes and 1 truth centroids"):
        centroid_error((0, 0, 1, 1), (0, 0, 1), [(0, 0, 1, 1), (2, 2, 3, 3)], [(0, 0, 1)])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"camera_info": None}, r"field 'depth' without 'camera_info'; accepted: depth and camera_info together"),
        ({"depth": None, "camera_info": None}, r"field 'centroids_3d' without 'depth', 'camera_info'"),
        ({"centroids_3d": [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]}, r"'centroids_3d' = .*accepted: a list of 1 points"),
        ({"centroids_3d": [[0.0, 0.0, -1.0]]}, r"with z > 0"),
        ({"depth": "nothing.png"}, r"field 'depth' = 'nothing.png': no such file"),
    ],
)
def test_bad_3d_fields_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    root = tmp_path / "bad"
    write_image(root / "a.png", 100, 100, 90)
    cv2.imwrite(str(root / "depth.png"), np.full((100, 100), 800, np.uint16))
    (root / "info.json").write_text(json.dumps(CAMERA.to_camera_info()))
    record = {"image": "a.png", "command": "take the bowl", "boxes": [[0, 0, 50, 50]], "depth": "depth.png",
              "camera_info": "info.json", "centroids_3d": [[0.0, 0.0, 0.8]]}
    record.update(change)
    write_labels(root, [{k: v for k, v in record.items() if v is not None}])
    with pytest.raises(DatasetError, match=message):
        load_dataset(root)


def test_depth_without_truth_centroids_gives_the_pose_rate_only(tmp_path: Path) -> None:
    root = write_rgbd(tmp_path / "rgbd")
    lines = [json.loads(line) for line in (root / "labels.jsonl").read_text().splitlines()]
    write_labels(root, [{k: v for k, v in r.items() if k != "centroids_3d"} for r in lines])
    m = build_report(run_eval(rgbd_oracle(), load_dataset(root), ["exact"])).per_mode["exact"]["all"].metrics
    assert (m.pose_rate.hits, m.pose_rate.total) == (3, 4)  # as with truth: mug, cup, spoon of the four found
    assert m.centroid_error_m.count == 0 and m.centroid_error_m.value is None


def test_a_depth_of_another_size_is_refused_when_read(tmp_path: Path) -> None:
    root = tmp_path / "size"
    write_image(root / "a.png", 100, 100, 90)
    cv2.imwrite(str(root / "depth.png"), np.full((50, 100), 800, np.uint16))
    (root / "info.json").write_text(json.dumps(CAMERA.to_camera_info()))
    write_labels(root, [{"image": "a.png", "command": "take the bowl", "boxes": [[0, 0, 50, 50]],
                         "depth": "depth.png", "camera_info": "info.json", "centroids_3d": [[0.0, 0.0, 0.8]]}])
    dataset = load_dataset(root)
    with pytest.raises(DatasetError, match=r"depth 'depth.png' is 100x50, the image is 100x100"):
        dataset.load_depth(dataset.queries[0], (100, 100))
