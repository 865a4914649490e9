"""How each class looks: its parts drawn as polygons into an object-local label canvas.

Every object lies along the x axis in canonical units, x from -100 to 100 (the object's length) and y across it,
y negative being the side the light comes from. A canvas holds part numbers (1 = parts[0], 0 = nothing), so the
scene can warp it with nearest-neighbour sampling and keep masks exact. Details that are not parts (a tape strip, a
seam) are `marks`: drawn later into the shaded colour only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

HALF_EXTENT = 112  # canonical units from the centre to the canvas edge: room for anything drawn within +-110
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_SHIFT_SCALE = 1 << _SHIFT


@dataclass
class Canvas:
    """A square object-local canvas at `res` pixels per canonical unit."""

    res: float
    labels: np.ndarray = field(init=False)
    marks: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (polygon px, brightness factor)

    def __post_init__(self) -> None:
        side = int(np.ceil(2 * HALF_EXTENT * self.res)) + 1
        self.labels = np.zeros((side, side), np.uint8)

    @property
    def centre(self) -> float:
        return (self.labels.shape[0] - 1) / 2

    def px(self, points: np.ndarray) -> np.ndarray:
        """Canonical units -> canvas pixel coordinates (float)."""
        return np.asarray(points, np.float64) * self.res + self.centre

    def poly(self, part: int, points: np.ndarray) -> None:
        """Fill a polygon with label `part` (0 erases)."""
        pts = np.round(self.px(points) * _SHIFT_SCALE).astype(np.int32)
        cv2.fillPoly(self.labels, [pts], int(part), lineType=cv2.LINE_8, shift=_SHIFT)

    def ellipse(self, part: int, cx: float, cy: float, rx: float, ry: float) -> None:
        self.poly(part, ellipse_points(cx, cy, rx, ry))

    def rect(self, part: int, x0: float, y0: float, x1: float, y1: float) -> None:
        self.poly(part, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))

    def capsule(self, part: int, x0: float, x1: float, half: float) -> None:
        """A rectangle from x0 to x1 with round ends of radius `half`: pens, handles."""
        self.rect(part, x0 + half, -half, x1 - half, half)
        self.ellipse(part, x0 + half, 0, half, half)
        self.ellipse(part, x1 - half, 0, half, half)

    def ring(self, part: int, cx: float, cy: float, rx: float, ry: float, thickness: float) -> None:
        """An elliptic ring; the hole is erased, so draw rings before whatever may cover their hole."""
        self.ellipse(part, cx, cy, rx, ry)
        self.ellipse(0, cx, cy, rx - thickness, ry - thickness)

    def mark(self, points: np.ndarray, brightness: float) -> None:
        self.marks.append((self.px(points), brightness))


def ellipse_points(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


# --- the classes, one function each; parts are numbered as in catalogue.CLASSES ------------------------------------


def _screwdriver(c: Canvas) -> None:
    c.capsule(1, -100, -22, 17)
    for x in (-84, -70, -56, -42):  # grip ridges
        c.mark(_box(x, -15, x + 4, 15), 0.8)
    c.rect(2, -26, -4, 80, 4)
    c.poly(3, np.array([[78, -4.5], [95, -3.5], [100, -1.5], [100, 1.5], [95, 3.5], [78, 4.5]]))


def _marker(c: Canvas) -> None:
    c.capsule(1, -100, 46, 13)
    c.rect(1, -60, -13, 46, 13)  # flat end under the cap
    c.capsule(2, 38, 100, 15)
    c.mark(_box(-40, -13, -30, 13), 0.85)  # a label band


def _scissors(c: Canvas) -> None:
    c.ring(1, -72, -24, 28, 20, 8)
    c.ring(1, -72, 24, 28, 20, 8)
    c.rect(1, -48, -10, -28, 10)
    c.poly(2, np.array([[-34, -9], [-20, -11], [100, -3], [100, 1], [-20, 3]]))
    c.poly(2, np.array([[-34, 9], [-20, 11], [100, 3], [100, -1], [-20, -3]]))
    c.mark(ellipse_points(-22, 0, 4, 4, 16), 0.6)  # the pivot screw


def _mug(c: Canvas) -> None:
    c.ring(2, -58, 0, 42, 34, 12)
    c.rect(1, -52, -62, 70, 62)
    c.mark(_box(62, -62, 70, 62), 1.15)  # the rim


def _bottle(c: Canvas) -> None:
    c.capsule(1, -100, 40, 34)
    c.poly(1, np.array([[20, -34], [40, -34], [62, -14], [62, 14], [40, 34], [20, 34]]))
    c.rect(1, 60, -13, 80, 13)
    c.rect(2, 78, -16, 100, 16)
    c.mark(_box(-70, -34, -20, 34), 1.12)  # a label


def _pen(c: Canvas) -> None:
    c.capsule(1, -100, 62, 6)
    c.poly(1, np.array([[60, -6], [80, -3], [86, -1], [86, 1], [80, 3], [60, 6]]))
    c.capsule(2, -100, -45, 7.5)
    c.mark(_box(-88, -9, -50, -6.5), 0.75)  # the clip, on the lit side


def _spoon(c: Canvas) -> None:
    c.poly(1, np.array([[-100, -7], [-96, -10], [24, -4.5], [24, 4.5], [-96, 10], [-100, 7]]))
    c.ellipse(2, 56, 0, 44, 26)
    c.mark(ellipse_points(60, 3, 30, 15), 0.85)  # the bowl's hollow


def _banana(c: Canvas) -> None:
    t = np.linspace(-1, 1, 40)
    cy = 50 * t**2 - 25
    half = 21 * np.sqrt(1 - t**2) + 3
    top = np.stack([100 * t, cy - half], axis=1)
    bottom = np.stack([100 * t, cy + half], axis=1)[::-1]
    c.poly(1, np.concatenate([top, bottom]))
    c.mark(_box(-100, 22, -92, 30), 0.45)  # the dark tip


def _apple(c: Canvas) -> None:
    c.ellipse(1, -24, 8, 64, 74)
    c.ellipse(1, 24, 8, 64, 74)
    c.rect(2, -4, -86, 4, -58)
    c.mark(ellipse_points(-40, -22, 14, 10, 16), 1.25)  # a glint


def _box_shape(c: Canvas) -> None:
    c.rect(1, -100, -66, 100, 66)
    c.mark(_box(-100, -9, 100, 9), 1.18)  # tape over the lid seam


def _ball(c: Canvas) -> None:
    c.ellipse(1, 0, 0, 100, 100)
    c.mark(np.concatenate([ellipse_points(0, 0, 100, 30)[:24], ellipse_points(0, 0, 100, 24)[:24][::-1]]), 0.75)


def _book(c: Canvas) -> None:
    c.rect(1, -100, -70, 100, 70)
    c.rect(2, -94, 50, 96, 64)
    c.mark(_box(-100, -70, -88, 50), 0.75)  # the spine


def _phone(c: Canvas) -> None:
    c.capsule(1, -100, 100, 50)
    c.rect(1, -86, -50, 86, 50)  # squarer corners than a capsule
    c.rect(2, -84, -40, 80, 40)
    c.mark(ellipse_points(90, 0, 3, 3, 12), 0.4)  # the camera


DRAW: dict[str, Callable[[Canvas], None]] = {
    "screwdriver": _screwdriver,
    "marker": _marker,
    "scissors": _scissors,
    "mug": _mug,
    "bottle": _bottle,
    "pen": _pen,
    "spoon": _spoon,
    "banana": _banana,
    "apple": _apple,
    "box": _box_shape,
    "ball": _ball,
    "book": _book,
    "phone": _phone,
}


@lru_cache(maxsize=64)
def draw(cls: str, res: float) -> Canvas:
    """The label canvas of class `cls` at `res` pixels per canonical unit. Cached and shared: do not modify it."""
    canvas = Canvas(res)
    DRAW[cls](canvas)
    return canvas
