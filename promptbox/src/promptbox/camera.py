"""A camera's intrinsics from a CameraInfo-like K or P, and back-projection of pixels into its optical frame.

Which matrix applies (sensor_msgs/CameraInfo's own rules):
- `K` (3x3) describes the raw image, the one published on `image_raw` and its aligned depth. When the camera reports
  distortion (`D` non-zero), pixels are undistorted with `D` before back-projection.
- `P` (3x4) describes the *rectified* image (`image_rect`, `image_rect_raw`, a stereo pair's rectified views): use it
  whenever the colour and depth frames were rectified; `D` is then already applied and ignored. Its 4th column holds a
  stereo baseline for the second camera of a pair; only a monocular or first camera (Tx = Ty = 0) is accepted, so the
  3D answer is always in the frame of the camera that took the image.
Most RGB-D drivers (RealSense, Orbbec aligned depth) publish D = 0 and P[:3, :3] = K, so both give the same answer.

The optical frame is ROS's `*_optical_frame`: x right, y down, z forward along the optical axis, in metres. Integer
pixel coordinates are pixel centres, as in CameraInfo.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Distortion models cv2.undistortPoints understands with the coefficient counts CameraInfo uses for them.
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal lengths and principal point in pixels, the image size it was calibrated for, and the
    distortion to undo first (empty for a rectified or distortion-free image). `source` is "K" or "P"."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    skew: float = 0.0
    distortion: tuple[float, ...] = ()
    distortion_model: str = ""
    source: str = "K"

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, self.skew, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def distorted(self) -> bool:
        return any(c != 0.0 for c in self.distortion)

    def normalized(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (centres at integers) -> normalized image coordinates x/z, y/z, distortion undone."""
        u = np.asarray(u, np.float64)
        v = np.asarray(v, np.float64)
        if self.distorted:
            points = np.stack([u, v], axis=-1).reshape(-1, 1, 2)
            out = cv2.undistortPoints(points, self.matrix, np.asarray(self.distortion, np.float64)).reshape(-1, 2)
            return out[:, 0].reshape(u.shape), out[:, 1].reshape(v.shape)
        y = (v - self.cy) / self.fy
        x = (u - self.cx - self.skew * y) / self.fx
        return x, y

    def back_project(self, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Nx3 points in the optical frame (metres) of pixels (u, v) at depths z (metres along the optical axis)."""
        x, y = self.normalized(u, v)
        z = np.asarray(z, np.float64)
        return np.stack([x * z, y * z, z], axis=-1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Nx2 pixel coordinates of Nx3 optical-frame points (no distortion applied; for checks and tests)."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        x, y = points[:, 0] / points[:, 2], points[:, 1] / points[:, 2]
        return np.stack([self.fx * x + self.skew * y + self.cx, self.fy * y + self.cy], axis=-1)

    def to_camera_info(self) -> dict:
        """A CameraInfo-like dict (ROS 2 field names) that `from_camera_info` reads back."""
        k = [self.fx, self.skew, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]
        p = [self.fx, self.skew, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return {
            "width": self.width, "height": self.height,
            "distortion_model": self.distortion_model or "plumb_bob",
            "d": list(self.distortion) or [0.0] * 5,
            "k": k, "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "p": p,
        }


@dataclass(frozen=True)
class CameraInfo:
    """The fields of sensor_msgs/CameraInfo that 3D needs, as plain lists (ROS 2 names, row-major)."""

    width: int
    height: int
    k: tuple[float, ...]
    p: tuple[float, ...] = ()
    d: tuple[float, ...] = ()
    distortion_model: str = ""


def from_k(k: Sequence[float], width: int, height: int, d: Sequence[float] = (),
           distortion_model: str = "") -> Intrinsics:
    """Intrinsics of the raw image from K (9 numbers, row-major) and its distortion D (empty or all zero: none)."""
    _check_size(width, height)
    m = _matrix("k", k, (3, 3))
    if not m.any():
        raise ValueError("k is all zeros: the camera is uncalibrated (CameraInfo's convention); accepted: a "
                         "calibrated K [fx, s, cx, 0, fy, cy, 0, 0, 1]")
    if not np.allclose(m[2], (0, 0, 1)) or m[1, 0] != 0:
        raise ValueError(f"k = {_short(k)} is not an intrinsic matrix; accepted: [fx, s, cx, 0, fy, cy, 0, 0, 1]")
    distortion = tuple(float(c) for c in d)
    if not all(math.isfinite(c) for c in distortion):
        raise ValueError(f"d = {_short(d)} has a non-finite coefficient; accepted: finite numbers")
    if any(distortion):
        if distortion_model not in DISTORTION_MODELS:
            raise ValueError(f"distortion_model = {distortion_model!r} with non-zero d is not supported; accepted: "
                             f"{', '.join(DISTORTION_MODELS)}, or use the rectified image and P")
        if len(distortion) not in (4, 5, 8, 12, 14):
            raise ValueError(f"d has {len(distortion)} coefficients; accepted: 4, 5, 8, 12 or 14 (OpenCV's order)")
    else:
        distortion = ()  # all zero: nothing to undo, and the fast path applies
    return _intrinsics("k", m, width, height, distortion, distortion_model if distortion else "", "K")


def from_p(p: Sequence[float], width: int, height: int) -> Intrinsics:
    """Intrinsics of the rectified image from P (12 numbers, row-major). Only Tx = Ty = 0 is accepted."""
    _check_size(width, height)
    m = _matrix("p", p, (3, 4))
    if not m.any():
        raise ValueError("p is all zeros: the camera is uncalibrated; accepted: a calibrated P "
                         "[fx, s, cx, Tx, 0, fy, cy, Ty, 0, 0, 1, 0]")
    if not np.allclose(m[2], (0, 0, 1, 0)) or m[1, 0] != 0:
        raise ValueError(f"p = {_short(p)} is not a projection matrix; accepted: "
                         "[fx, s, cx, Tx, 0, fy, cy, Ty, 0, 0, 1, 0]")
    if m[0, 3] != 0 or m[1, 3] != 0:
        raise ValueError(f"p has Tx = {m[0, 3]:g}, Ty = {m[1, 3]:g}: the second camera of a stereo pair, whose points "
                         "would land in the first camera's frame; accepted: Tx = Ty = 0 (a monocular or first camera)")
    return _intrinsics("p", m[:, :3], width, height, (), "", "P")


def from_camera_info(info: CameraInfo, *, rectified: bool) -> Intrinsics:
    """P when the images are rectified, K (and D) when they are raw; see the module docstring."""
    if rectified:
        if not info.p:
            raise ValueError("p is missing: rectified=True needs CameraInfo's P; accepted: 12 numbers, or "
                             "rectified=False to use K")
        return from_p(info.p, info.width, info.height)
    return from_k(info.k, info.width, info.height, info.d, info.distortion_model)


def read_camera_info(path: str | Path) -> CameraInfo:
    """A CameraInfo as JSON: {"width", "height", "k": [9], optional "p": [12], "d": [...], "distortion_model"}
    (the field names of ROS 2's sensor_msgs/CameraInfo, e.g. `ros2 topic echo --once camera_info` turned to JSON)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"camera_info {str(path)!r} could not be read ({error.strerror}); accepted: a JSON file"
                         ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"camera_info {str(path)!r} is not valid JSON ({error.msg} at line {error.lineno})"
                         ) from None
    if not isinstance(record, dict):
        raise ValueError(f"camera_info {str(path)!r} is not a JSON object; accepted: {{\"width\", \"height\", "
                         "\"k\", ...}")
    for name in ("width", "height", "k"):
        if name not in record:
            raise ValueError(f"camera_info {str(path)!r}: field {name!r} is missing; required: width, height, k")
    model = record.get("distortion_model", "")
    if not isinstance(model, str):
        raise ValueError(f"camera_info {str(path)!r}: field 'distortion_model' = {model!r}; accepted: a string")
    return CameraInfo(
        width=_whole(path, "width", record["width"]),
        height=_whole(path, "height", record["height"]),
        k=_numbers(path, "k", record["k"]),
        p=_numbers(path, "p", record.get("p", [])),
        d=_numbers(path, "d", record.get("d", [])),
        distortion_model=model,
    )


def _intrinsics(name: str, m: np.ndarray, width: int, height: int, distortion: tuple[float, ...], model: str,
                source: str) -> Intrinsics:
    fx, fy = float(m[0, 0]), float(m[1, 1])
    if fx <= 0 or fy <= 0:
        raise ValueError(f"{name} has fx = {fx:g}, fy = {fy:g}; accepted: positive focal lengths in pixels")
    return Intrinsics(fx, fy, float(m[0, 2]), float(m[1, 2]), int(width), int(height), float(m[0, 1]),
                      distortion, model, source)


def _matrix(name: str, values: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    count = shape[0] * shape[1]
    try:
        m = np.asarray(values, np.float64).reshape(shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {_short(values)}; accepted: {count} numbers, row-major") from None
    if not np.isfinite(m).all():
        raise ValueError(f"{name} = {_short(values)} has a non-finite value; accepted: {count} finite numbers")
    return m


def _check_size(width: int, height: int) -> None:
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"camera_info size {width}x{height}; accepted: the calibrated image's width and height, "
                         "both at least 1 (CameraInfo with width or height 0 carries no calibration)")


def _whole(path: Path, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"camera_info {str(path)!r}: field {name!r} = {value!r}; accepted: a whole number")
    return value


def _numbers(path: Path, name: str, value: object) -> tuple[float, ...]:
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ValueError(f"camera_info {str(path)!r}: field {name!r} = {_short(value)}; accepted: a list of numbers")
    return tuple(float(v) for v in value)


def _short(value: object, limit: int = 80) -> str:
    text = repr(list(value)) if isinstance(value, (tuple, np.ndarray)) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
