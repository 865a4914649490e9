"""The 3D target: a detection's mask over an aligned depth image -> its centroid and extent in the camera optical frame.

Robust by construction, because wrong 3D answers are what users of detection wrappers report most:
- depth is read under the *mask*, never the box (a box around a mug is mostly table);
- zero (the driver's "no reading"), NaN/inf and out-of-range pixels are ignored, and counted, so "no pose" says why;
- the centroid's depth is the median of what is left, so edge bleed onto the table and speckle do not move it;
- pixels far from that median (beyond `outlier_mads` median absolute deviations, and at least `depth_band_m` away) are
  the table or background seen through a loose mask edge, or flying pixels at depth edges: x, y and the extent leave
  them out, since a mask grown by a few pixels onto the table would otherwise pull the centre and double the size;
- the extent is a percentile spread, so a few stray pixels do not inflate it.
The centroid is of the *visible surface* (a camera cannot see the back of an object): its z is the median depth under
the mask, its x and y the mean viewing ray of the pixels kept, at that depth. Intrinsics, and which of K or P
applies: camera.py.

For a ROS adapter: `target_from_depth(mask, depth_array, msg.encoding, camera.from_k(info.k, info.width, info.height,
info.d, info.distortion_model))` (or `camera.from_p` for rectified images); everything is numpy, nothing imports ROS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from promptbox.camera import Intrinsics

# encoding -> (numpy dtype, metres per unit); the two encodings RGB-D drivers publish on aligned depth topics.
DEPTH_ENCODINGS: dict[str, tuple[type, float]] = {"16UC1": (np.uint16, 0.001), "32FC1": (np.float32, 1.0)}
_ACCEPTED = "16UC1 (uint16 millimetres) or 32FC1 (float32 metres)"
OPTICAL_FRAME = "camera optical frame (x right, y down, z forward), metres"


@dataclass(frozen=True)
class DepthSettings:
    """`min_range_m`/`max_range_m`: depths outside are ignored (sensor minimum, far walls). `min_valid_fraction`: the
    share of mask pixels that must keep a valid depth for a pose. `extent_percentiles`: the spread that is the size."""

    min_range_m: float = 0.1
    max_range_m: float = 10.0
    min_valid_fraction: float = 0.3
    extent_percentiles: tuple[float, float] = (2.0, 98.0)
    outlier_mads: float = 3.0
    depth_band_m: float = 0.02

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_range_m) and self.min_range_m >= 0):
            raise ValueError(f"min_range_m = {self.min_range_m!r}; accepted: a finite number >= 0 (metres)")
        if not (math.isfinite(self.max_range_m) and self.max_range_m > self.min_range_m):
            raise ValueError(f"max_range_m = {self.max_range_m!r}; accepted: a finite number above min_range_m = "
                             f"{self.min_range_m!r} (metres)")
        if not 0 < self.min_valid_fraction <= 1:
            raise ValueError(f"min_valid_fraction = {self.min_valid_fraction!r}; accepted: a number in (0, 1]")
        lo, hi = self.extent_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"extent_percentiles = {self.extent_percentiles!r}; accepted: (low, high) with "
                             "0 <= low < high <= 100")
        if not (math.isfinite(self.outlier_mads) and self.outlier_mads > 0):
            raise ValueError(f"outlier_mads = {self.outlier_mads!r}; accepted: a finite number above 0")
        if not (math.isfinite(self.depth_band_m) and self.depth_band_m > 0):
            raise ValueError(f"depth_band_m = {self.depth_band_m!r}; accepted: a finite number above 0 (metres)")


@dataclass(frozen=True)
class Target3D:
    """The object in 3D, in the optical frame of the camera that took the frame (see OPTICAL_FRAME).

    `centroid_m`: the visible surface's centre. `extent_m`: the percentile spread of the mask's 3D points along x, y, z
    (z is the relief the camera sees, not the full height). `clipped`: the mask touches the frame's edge, so the object
    may continue outside the image and both describe its visible part. Orientation is the optical frame's own."""

    centroid_m: tuple[float, float, float]
    extent_m: tuple[float, float, float]
    valid_fraction: float
    valid_pixels: int
    mask_pixels: int
    clipped: bool
    intrinsics: str  # "K" or "P": which CameraInfo matrix was used

    has_pose = True

    def to_dict(self) -> dict:
        return {
            "has_pose": True,
            "frame": OPTICAL_FRAME,
            "centroid_m": [round(v, 4) for v in self.centroid_m],
            "extent_m": [round(v, 4) for v in self.extent_m],
            "valid_fraction": round(self.valid_fraction, 4),
            "valid_pixels": self.valid_pixels,
            "mask_pixels": self.mask_pixels,
            "clipped": self.clipped,
            "intrinsics": self.intrinsics,
        }

    def summary(self) -> str:
        x, y, z = self.centroid_m
        dx, dy, dz = self.extent_m
        clipped = "; the mask touches the frame edge, so this is its visible part" if self.clipped else ""
        return (f"3D: centroid x={x:.3f} y={y:.3f} z={z:.3f} m, extent {dx:.3f} x {dy:.3f} x {dz:.3f} m "
                f"(camera optical frame, {self.intrinsics}; {self.valid_fraction:.0%} of the mask has depth{clipped})")


@dataclass(frozen=True)
class NoPose:
    """Why there is no 3D target; the 2D answer stands as it is. `valid_fraction` is None when depth was not read."""

    reason: str
    valid_fraction: float | None = None

    has_pose = False

    def to_dict(self) -> dict:
        fraction = None if self.valid_fraction is None else round(self.valid_fraction, 4)
        return {"has_pose": False, "reason": self.reason, "valid_fraction": fraction}

    def summary(self) -> str:
        return f"3D: no pose: {self.reason}"


def depth_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """An HxW depth image in its ROS encoding -> float32 metres; zero, NaN and inf are kept for the caller to ignore."""
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding {encoding!r} is not supported; accepted: {_ACCEPTED}")
    depth = np.asarray(depth)
    dtype, scale = DEPTH_ENCODINGS[encoding]
    if depth.dtype != dtype:
        raise ValueError(f"depth dtype {depth.dtype} does not match encoding {encoding!r}; accepted: {_ACCEPTED}")
    if depth.ndim != 2:
        raise ValueError(f"depth shape {depth.shape} is not HxW; accepted: a single-channel image, {_ACCEPTED}")
    return depth.astype(np.float32) * np.float32(scale) if scale != 1.0 else depth


def target_from_depth(
    mask: np.ndarray,
    depth: np.ndarray | None,
    encoding: str,
    intrinsics: Intrinsics | None,
    settings: DepthSettings | None = None,
) -> Target3D | NoPose:
    """The 3D target of `mask` (HxW bool, the colour frame's pixels) over `depth` aligned to that frame.

    `depth` or `intrinsics` None (no depth frame, no camera_info) gives NoPose saying so. Bad input (an unknown
    encoding, a depth, mask or camera_info of another size, an empty mask) is a ValueError naming it."""
    settings = settings or DepthSettings()
    if depth is None:
        return NoPose("no depth image for this frame")
    if intrinsics is None:
        return NoPose("no camera_info for this frame")
    metres = depth_metres(depth, encoding)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask dtype {mask.dtype}; accepted: an HxW bool mask (Detection.mask)")
    h, w = metres.shape
    if mask.shape != metres.shape:
        raise ValueError(f"depth is {w}x{h} but the mask (the colour frame) is {mask.shape[1]}x{mask.shape[0]}; "
                         "accepted: depth aligned to the colour frame, of the same width and height")
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise ValueError(f"camera_info is for {intrinsics.width}x{intrinsics.height} but the depth is {w}x{h}; "
                         "accepted: the camera_info published with the aligned depth, of the same size")
    vs, us = np.nonzero(mask)
    if len(us) == 0:
        raise ValueError("mask has no pixels; accepted: a detection's mask with at least one pixel")

    z = metres[vs, us]
    finite = np.isfinite(z)
    zero = finite & (z <= 0)  # drivers write 0 where they have no reading; negative depth is no reading either
    near = finite & ~zero & (z < settings.min_range_m)
    far = finite & (z > settings.max_range_m)
    valid = finite & ~zero & ~near & ~far
    fraction = float(valid.mean())
    if fraction < settings.min_valid_fraction or not valid.any():
        return NoPose(_why(len(z), int(valid.sum()), int(zero.sum()), int((~finite).sum()), int(near.sum()),
                           int(far.sum()), settings), fraction)

    z = z[valid].astype(np.float64)
    depth_m = float(np.median(z))
    spread = settings.outlier_mads * 1.4826 * float(np.median(np.abs(z - depth_m)))  # 1.4826: MAD -> sigma
    kept = np.abs(z - depth_m) <= max(spread, settings.depth_band_m)
    us, vs, z = us[valid][kept], vs[valid][kept], z[kept]
    x, y = intrinsics.normalized(us, vs)
    # The visible surface's centre: the mean viewing ray, met at the median depth (robust to bleed and speckle).
    centroid = (float(x.mean() * depth_m), float(y.mean() * depth_m), depth_m)
    points = np.stack([x * z, y * z, z], axis=-1)
    lo, hi = np.percentile(points, settings.extent_percentiles, axis=0)
    size = hi - lo
    extent = (float(size[0]), float(size[1]), float(size[2]))
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    clipped = bool(rows[0] == 0 or cols[0] == 0 or rows[-1] == h - 1 or cols[-1] == w - 1)
    return Target3D(centroid, extent, fraction, int(valid.sum()), len(valid), clipped, intrinsics.source)


def read_depth(path: str | Path) -> tuple[np.ndarray, str]:
    """A depth image file and its encoding: 16-bit PNG/TIFF -> 16UC1 (millimetres), 32-bit float TIFF -> 32FC1
    (metres), the two forms `cv2.imwrite` and ROS bag exports write."""
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise ValueError(f"depth {str(path)!r} could not be read; accepted: a 16-bit PNG/TIFF in millimetres or a "
                         "32-bit float TIFF in metres")
    for encoding, (dtype, _) in DEPTH_ENCODINGS.items():
        if depth.dtype == dtype and depth.ndim == 2:
            return depth, encoding
    channels = 1 if depth.ndim == 2 else depth.shape[2]
    raise ValueError(f"depth {str(path)!r} holds {channels}-channel {depth.dtype} pixels; accepted: one channel of "
                     "uint16 millimetres (16-bit PNG/TIFF) or float32 metres (TIFF)")


def _why(pixels: int, valid: int, zero: int, nonfinite: int, near: int, far: int, settings: DepthSettings) -> str:
    missing, out_of_range = zero + nonfinite, near + far
    lead = "depth out of range under the mask" if out_of_range > missing else "depth missing under the mask"
    return (f"{lead}: {valid} of {pixels} pixels ({valid / pixels:.0%}) valid, below min_valid_fraction "
            f"{settings.min_valid_fraction:g} ({zero} zero, {nonfinite} NaN/inf, {near} nearer than "
            f"{settings.min_range_m:g} m, {far} farther than {settings.max_range_m:g} m)")
