"""The 3D target from depth: synthetic depth rendered by ray casting here, truth from the geometry, not the code."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from promptbox.camera import CameraInfo, Intrinsics, from_camera_info, from_k, from_p, read_camera_info
from promptbox.depth import DepthSettings, NoPose, Target3D, depth_metres, read_depth, target_from_depth

W, H = 640, 480
K = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
PLANE = 0.8  # the table, perpendicular to the optical axis
TOP = 0.6  # the box's top face; the box stands on the table, so its sides span TOP..PLANE
BOX = (0.02, 0.12, -0.05, 0.01)  # x0, x1, y0, y1 in metres: 10 x 6 cm, off the optical axis so a side shows
TRUTH = np.array([0.07, -0.02, TOP])  # the top face's centre


def render(camera: Intrinsics, box: tuple[float, float, float, float] = BOX) -> tuple[np.ndarray, np.ndarray]:
    """Depth in metres (float64) and the object's mask: each pixel's ray meets the box (top or sides) or the plane."""
    vs, us = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    x, y = camera.normalized(us, vs)
    x0, x1, y0, y1 = box
    # Slab intersection of the ray z * (x, y, 1) with [x0, x1] x [y0, y1] x [TOP, PLANE].
    with np.errstate(divide="ignore", invalid="ignore"):
        ax, bx = np.sort(np.stack([x0 / x, x1 / x]), axis=0)
        ay, by = np.sort(np.stack([y0 / y, y1 / y]), axis=0)
    ax = np.where(x == 0, np.where((x0 <= 0) & (0 <= x1), -np.inf, np.inf), ax)
    bx = np.where(x == 0, np.where((x0 <= 0) & (0 <= x1), np.inf, -np.inf), bx)
    ay = np.where(y == 0, np.where((y0 <= 0) & (0 <= y1), -np.inf, np.inf), ay)
    by = np.where(y == 0, np.where((y0 <= 0) & (0 <= y1), np.inf, -np.inf), by)
    enter = np.maximum.reduce([ax, ay, np.full_like(x, TOP)])
    leave = np.minimum.reduce([bx, by, np.full_like(x, PLANE)])
    hit = enter <= leave
    return np.where(hit, enter, PLANE), hit


@pytest.fixture(scope="module")
def camera() -> Intrinsics:
    return from_k(K, W, H)


@pytest.fixture(scope="module")
def scene(camera: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    return render(camera)


def mm(depth_m: np.ndarray) -> np.ndarray:
    return np.round(depth_m * 1000).astype(np.uint16)


def test_box_on_a_plane_lands_within_1_cm_of_the_truth(camera: Intrinsics, scene) -> None:
    depth, mask = scene
    assert 0.01 < mask.mean() < 0.2 and depth[mask].max() > TOP + 0.05  # a side face is in view, not only the top
    target = target_from_depth(mask, mm(depth), "16UC1", camera)
    assert isinstance(target, Target3D) and target.has_pose
    assert np.linalg.norm(np.array(target.centroid_m) - TRUTH) < 0.01
    assert abs(target.centroid_m[2] - TOP) < 0.002  # median depth: the top face, not the sides or the plane
    # Projected back into the image, the centroid lands on the top face's centre pixel (1 cm is ~9 px here).
    assert np.linalg.norm(camera.project(np.array(target.centroid_m)) - camera.project(TRUTH)) < 9
    dx, dy, _ = target.extent_m
    assert abs(dx - 0.10) < 0.01 and abs(dy - 0.06) < 0.01
    assert target.valid_fraction == 1.0 and not target.clipped and target.intrinsics == "K"


@pytest.mark.parametrize("tilt_deg", [30, 60])
def test_a_tilted_face_lands_within_1_cm_and_keeps_its_depth_spread(camera: Intrinsics, tilt_deg: int) -> None:
    """A 10 x 10 cm square centred at (0.05, 0, 0.7), tilted about x, in front of a wall at 1 m: perspective makes
    its near half bigger in the image, and its depth spans centimetres, which must not be cut as outliers."""
    tilt = np.radians(tilt_deg)
    centre = np.array([0.05, 0.0, 0.7])
    normal, across = np.array([0.0, np.sin(tilt), -np.cos(tilt)]), np.array([0.0, np.cos(tilt), np.sin(tilt)])
    vs, us = np.mgrid[0:H, 0:W].astype(np.float64)
    x, y = camera.normalized(us, vs)
    rays = np.stack([x, y, np.ones_like(x)], axis=-1)
    t = (normal @ centre) / (rays @ normal)  # distance along each ray to the face's plane = depth (ray z is 1)
    offset = t[..., None] * rays - centre
    mask = (np.abs(offset[..., 0]) <= 0.05) & (np.abs(offset @ across) <= 0.05)
    depth = np.where(mask, t, 1.0)
    target = target_from_depth(mask, mm(depth), "16UC1", camera)
    assert isinstance(target, Target3D)
    assert np.linalg.norm(np.array(target.centroid_m) - centre) < 0.01
    seen_depth = 0.1 * np.sin(tilt)  # the face's extent along z
    assert abs(target.extent_m[2] - seen_depth) < 0.2 * seen_depth and abs(target.extent_m[0] - 0.1) < 0.01


def test_the_mask_not_the_box_decides_the_depth(camera: Intrinsics, scene) -> None:
    """A mask grown 4 px onto the table (a loose SAM edge) keeps the centroid and the size: table pixels drop out."""
    depth, mask = scene
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    target = target_from_depth(grown, mm(depth), "16UC1", camera)
    assert isinstance(target, Target3D)
    assert np.linalg.norm(np.array(target.centroid_m) - TRUTH) < 0.01
    assert abs(target.extent_m[0] - 0.10) < 0.015 and abs(target.extent_m[1] - 0.06) < 0.015


def test_holes_and_nan_under_the_mask_are_ignored(camera: Intrinsics, scene) -> None:
    depth, mask = scene
    rng = np.random.default_rng(0)
    holes = mask & (rng.random(mask.shape) < 0.4)
    as_mm = mm(depth)
    as_mm[holes] = 0
    as_m = depth.astype(np.float32)
    as_m[holes] = np.nan
    as_m[mask & ~holes & (rng.random(mask.shape) < 0.05)] = 0.0  # zeros mean "no reading" in 32FC1 too
    for array, encoding in ((as_mm, "16UC1"), (as_m, "32FC1")):
        target = target_from_depth(mask, array, encoding, camera)
        assert isinstance(target, Target3D), encoding
        assert np.linalg.norm(np.array(target.centroid_m) - TRUTH) < 0.01, encoding
        assert 0.5 < target.valid_fraction < 0.7 and target.valid_pixels < target.mask_pixels


def test_millimetres_and_metres_agree_and_a_wrong_encoding_is_refused(camera: Intrinsics, scene) -> None:
    depth, mask = scene
    in_mm = target_from_depth(mask, mm(depth), "16UC1", camera)
    in_m = target_from_depth(mask, depth.astype(np.float32), "32FC1", camera)
    assert isinstance(in_mm, Target3D) and isinstance(in_m, Target3D)
    assert np.allclose(in_mm.centroid_m, in_m.centroid_m, atol=0.001)
    assert np.allclose(depth_metres(np.array([[600, 0]], np.uint16), "16UC1"), [[0.6, 0.0]])
    with pytest.raises(ValueError, match=r"dtype uint16 does not match encoding '32FC1'.*16UC1.*32FC1"):
        target_from_depth(mask, mm(depth), "32FC1", camera)
    with pytest.raises(ValueError, match=r"encoding 'mono8' is not supported; accepted: 16UC1"):
        target_from_depth(mask, mm(depth), "mono8", camera)
    with pytest.raises(ValueError, match=r"dtype >u2 does not match encoding '16UC1'"):  # a big-endian message
        target_from_depth(mask, mm(depth).astype(">u2"), "16UC1", camera)
    with pytest.raises(ValueError, match=r"shape \(480, 640, 3\) is not HxW"):
        depth_metres(np.zeros((480, 640, 3), np.uint16), "16UC1")


def test_mismatched_sizes_are_a_clear_error(camera: Intrinsics, scene) -> None:
    depth, mask = scene
    half = mm(depth)[::2, ::2]
    with pytest.raises(ValueError, match=r"depth is 320x240 but the mask \(the colour frame\) is 640x480"):
        target_from_depth(mask, half, "16UC1", camera)
    with pytest.raises(ValueError, match=r"camera_info is for 320x240 but the depth is 640x480"):
        target_from_depth(mask, mm(depth), "16UC1", from_k(K, 320, 240))
    with pytest.raises(ValueError, match="mask has no pixels"):
        target_from_depth(np.zeros_like(mask), mm(depth), "16UC1", camera)
    with pytest.raises(ValueError, match="mask dtype uint8"):
        target_from_depth(mask.astype(np.uint8), mm(depth), "16UC1", camera)


def test_a_mask_touching_the_frame_edge_gives_its_visible_part(camera: Intrinsics) -> None:
    # The frame's right edge at TOP is x = (W - 1 - cx) / fx * TOP = 0.3657 m; the box reaches past it.
    edge = (W - 1 - 319.5) / 525.0 * TOP
    box = (0.30, 0.45, -0.05, 0.01)
    depth, mask = render(camera, box)
    assert mask[:, -1].any()
    target = target_from_depth(mask, mm(depth), "16UC1", camera)
    assert isinstance(target, Target3D) and target.clipped
    visible_centre = np.array([(0.30 + edge) / 2, -0.02, TOP])
    assert np.linalg.norm(np.array(target.centroid_m) - visible_centre) < 0.01
    assert abs(target.extent_m[0] - (edge - 0.30)) < 0.01
    # Touching the top-left corner pixel works too (no off-by-one at index 0).
    corner = np.zeros((H, W), bool)
    corner[:20, :30] = True
    at_corner = target_from_depth(corner, mm(depth), "16UC1", camera)
    assert isinstance(at_corner, Target3D) and at_corner.clipped and at_corner.centroid_m[2] == pytest.approx(PLANE)


def test_p_is_used_for_rectified_images_and_differs_from_k() -> None:
    """A rectified image whose P (new camera matrix) differs from the raw K: only P gives the truth."""
    p = [480.0, 0.0, 330.0, 0.0, 0.0, 480.0, 250.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info = CameraInfo(W, H, k=tuple(K), p=tuple(p), d=(-0.2, 0.05, 0.0, 0.0, 0.0), distortion_model="plumb_bob")
    rectified = from_camera_info(info, rectified=True)
    assert rectified.source == "P" and (rectified.fx, rectified.cx, rectified.cy) == (480.0, 330.0, 250.0)
    assert not rectified.distorted  # D is already applied to a rectified image
    depth, mask = render(rectified)
    right = target_from_depth(mask, mm(depth), "16UC1", rectified)
    wrong = target_from_depth(mask, mm(depth), "16UC1", from_k(K, W, H))
    assert isinstance(right, Target3D) and isinstance(wrong, Target3D)
    assert np.linalg.norm(np.array(right.centroid_m) - TRUTH) < 0.01
    assert np.linalg.norm(np.array(wrong.centroid_m) - TRUTH) > 0.01
    assert from_camera_info(info, rectified=False).source == "K"
    stereo_right = list(p)
    stereo_right[3] = -480.0 * 0.05
    with pytest.raises(ValueError, match=r"Tx = -24, Ty = 0: the second camera of a stereo pair"):
        from_p(stereo_right, W, H)
    with pytest.raises(ValueError, match="p is missing: rectified=True"):
        from_camera_info(CameraInfo(W, H, k=tuple(K)), rectified=True)


def test_k_with_distortion_undoes_it() -> None:
    """A point projected with OpenCV's distortion model comes back to itself; ignoring D would miss it by cm."""
    d = (-0.25, 0.08, 0.001, -0.002, 0.0)
    camera = from_k(K, W, H, d, "plumb_bob")
    point = np.array([[0.25, -0.18, 0.7]])
    pixel = cv2.projectPoints(point, np.zeros(3), np.zeros(3), np.array(K).reshape(3, 3), np.array(d))[0][0, 0]
    back = camera.back_project(np.array([pixel[0]]), np.array([pixel[1]]), np.array([0.7]))
    assert np.allclose(back, point, atol=1e-4)
    naive = from_k(K, W, H).back_project(np.array([pixel[0]]), np.array([pixel[1]]), np.array([0.7]))
    assert np.linalg.norm(naive - point) > 0.01
    with pytest.raises(ValueError, match="distortion_model = 'equidistant' with non-zero d"):
        from_k(K, W, H, (0.1, 0.0, 0.0, 0.0), "equidistant")


def test_too_sparse_or_out_of_range_depth_is_no_pose_with_the_reason(camera: Intrinsics, scene) -> None:
    depth, mask = scene
    sparse = mm(depth)
    sparse[mask & (np.random.default_rng(1).random(mask.shape) < 0.8)] = 0
    answer = target_from_depth(mask, sparse, "16UC1", camera)
    assert isinstance(answer, NoPose) and not answer.has_pose
    assert answer.reason.startswith("depth missing under the mask") and "below min_valid_fraction 0.3" in answer.reason
    assert 0.15 < answer.valid_fraction < 0.25
    # The same depth passes a looser threshold: the fraction is a setting, not a constant.
    assert target_from_depth(mask, sparse, "16UC1", camera, DepthSettings(min_valid_fraction=0.1)).has_pose
    near = target_from_depth(mask, mm(depth), "16UC1", camera, DepthSettings(min_range_m=0.7))
    assert isinstance(near, NoPose) and near.reason.startswith("depth out of range under the mask")
    assert "nearer than 0.7 m" in near.reason
    far = target_from_depth(mask, mm(depth), "16UC1", camera, DepthSettings(max_range_m=0.5))
    assert isinstance(far, NoPose) and "farther than 0.5 m" in far.reason and far.valid_fraction == 0.0
    assert target_from_depth(mask, None, "16UC1", camera).reason == "no depth image for this frame"
    assert target_from_depth(mask, mm(depth), "16UC1", None).reason == "no camera_info for this frame"


def test_bad_settings_and_intrinsics_are_refused() -> None:
    with pytest.raises(ValueError, match=r"max_range_m = 0.05; accepted: a finite number above min_range_m"):
        DepthSettings(max_range_m=0.05)
    with pytest.raises(ValueError, match=r"min_valid_fraction = 0; accepted"):
        DepthSettings(min_valid_fraction=0)
    with pytest.raises(ValueError, match="k is all zeros: the camera is uncalibrated"):
        from_k([0.0] * 9, W, H)
    with pytest.raises(ValueError, match=r"k = \[1, 2, 3\]; accepted: 9 numbers"):
        from_k([1, 2, 3], W, H)
    with pytest.raises(ValueError, match="fx = -525"):
        from_k([-525.0, 0, 319.5, 0, 525.0, 239.5, 0, 0, 1], W, H)


def test_depth_and_camera_info_files(tmp_path: Path, camera: Intrinsics, scene) -> None:
    depth, _ = scene
    cv2.imwrite(str(tmp_path / "d.png"), mm(depth))
    cv2.imwrite(str(tmp_path / "d.tiff"), depth.astype(np.float32))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((4, 4, 3), np.uint8))
    png, encoding = read_depth(tmp_path / "d.png")
    assert encoding == "16UC1" and np.array_equal(png, mm(depth))
    tiff, encoding = read_depth(tmp_path / "d.tiff")
    assert encoding == "32FC1" and np.allclose(tiff, depth, atol=1e-6)
    with pytest.raises(ValueError, match="holds 3-channel uint8 pixels; accepted"):
        read_depth(tmp_path / "rgb.png")
    (tmp_path / "info.json").write_text(json.dumps(camera.to_camera_info()))
    info = read_camera_info(tmp_path / "info.json")
    assert from_camera_info(info, rectified=False) == camera
    assert from_camera_info(info, rectified=True).fx == camera.fx
    (tmp_path / "bad.json").write_text(json.dumps({"width": 640, "height": 480}))
    with pytest.raises(ValueError, match="field 'k' is missing"):
        read_camera_info(tmp_path / "bad.json")
