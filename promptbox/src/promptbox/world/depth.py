"""The world's depth camera: what an aligned RGB-D camera over the table would report for a scene, and the truth.

The model, deliberately simple and exact:
- one pinhole camera per frame size, looking straight down at the table (optical axis perpendicular to it) from
  TABLE_DISTANCE_M, with a horizontal field of view of HFOV_DEG, square pixels, the principal point at the image
  centre and no distortion (so CameraInfo's K and P agree);
- the table is the plane at TABLE_DISTANCE_M; every object is a flat-topped slab of its class's HEIGHTS_M, so a pixel
  of an object reads TABLE_DISTANCE_M - height, in whole millimetres (16UC1), with no noise and no holes;
- depth follows the image's drawing order: a visible pixel reads its own object's top, even where a lower object was
  drawn over a taller one (the 2D scene has no stacking), so depth and masks always agree.
The truth of a query's answer is the centre of its visible top surface: the mean viewing ray of its mask's pixels,
met at its top's depth. Computed from the geometry, not from the depth image.
"""

from __future__ import annotations

import math

import numpy as np

from promptbox.camera import Intrinsics
from promptbox.world.scene import Scene

TABLE_DISTANCE_M = 0.8
HFOV_DEG = 60.0
DEPTH_ENCODING = "16UC1"  # millimetres, as RealSense and Orbbec drivers publish aligned depth

# Slab heights in metres, whole millimetres: roughly each object lying on a table (a bottle on its side).
HEIGHTS_M: dict[str, float] = {
    "screwdriver": 0.03, "marker": 0.02, "scissors": 0.012, "mug": 0.095, "bottle": 0.07, "pen": 0.012,
    "spoon": 0.015, "banana": 0.04, "apple": 0.075, "box": 0.06, "ball": 0.065, "book": 0.03, "phone": 0.009,
}


def world_intrinsics(width: int, height: int) -> Intrinsics:
    """The world camera for a frame of `width` x `height` pixels (see the module docstring)."""
    focal = (width / 2) / math.tan(math.radians(HFOV_DEG) / 2)
    return Intrinsics(fx=focal, fy=focal, cx=(width - 1) / 2, cy=(height - 1) / 2, width=width, height=height)


def scene_depth_mm(scene: Scene) -> np.ndarray:
    """HxW uint16 depth in millimetres (16UC1), aligned to `scene.image`: the table, and each object's top."""
    depth = np.full(scene.image.shape[:2], round(TABLE_DISTANCE_M * 1000), np.uint16)
    for obj in scene.objects:
        depth[obj.mask] = round((TABLE_DISTANCE_M - HEIGHTS_M[obj.cls]) * 1000)
    return depth


def surface_centroid(mask: np.ndarray, cls: str, camera: Intrinsics) -> tuple[float, float, float]:
    """The truth: the centre of the visible top surface of an object of class `cls` covering `mask`, in metres in the
    camera optical frame."""
    vs, us = np.nonzero(mask)
    if len(us) == 0:
        raise ValueError("surface_centroid: the mask is empty; accepted: a mask with at least one pixel")
    top = TABLE_DISTANCE_M - HEIGHTS_M[cls]
    x, y = camera.normalized(us, vs)
    return float(x.mean() * top), float(y.mean() * top), top
