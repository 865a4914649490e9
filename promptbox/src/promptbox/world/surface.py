"""The table under the objects and the camera over them: surface textures, lighting, blur and sensor noise.

Everything here changes the image only; masks are decided elsewhere and stay exact.
"""

from __future__ import annotations

import cv2
import numpy as np

SURFACES = ("wood", "cloth", "plain")

_WOODS = ((172, 122, 78), (196, 152, 104), (140, 96, 62), (210, 180, 140))
_CLOTHS = ((70, 95, 130), (80, 120, 90), (120, 120, 125), (190, 180, 160), (140, 70, 70))
_PLAINS = ((205, 200, 190), (175, 178, 182), (150, 160, 150), (215, 210, 200))


def smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled smoothly."""
    grid = rng.standard_normal((cells, max(2, round(cells * width / height)))).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) / 1.5


def table(surface: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An HxWx3 float32 RGB table in [0, 255] of the given surface kind."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if surface == "wood":
        base = np.array(_WOODS[rng.integers(len(_WOODS))], np.float32)
        theta = rng.uniform(0, np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)  # along the grain
        v = -xx * np.sin(theta) + yy * np.cos(theta)  # across it
        wobble = 6 * smooth_noise(rng, width, height, 4)
        grain = np.sin(v * rng.uniform(0.25, 0.5) + wobble + 0.01 * u)
        plank = rng.uniform(90, 160) * max(width, height) / 640
        seams = (np.mod(v + rng.uniform(0, plank), plank) < 1.5).astype(np.float32)
        shade = 1 + 0.07 * grain + 0.06 * smooth_noise(rng, width, height, 6) - 0.3 * seams
    elif surface == "cloth":
        base = np.array(_CLOTHS[rng.integers(len(_CLOTHS))], np.float32)
        period = rng.uniform(3.5, 6.0)
        weave = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)
        shade = 1 + 0.07 * weave + 0.05 * smooth_noise(rng, width, height, 5)
    elif surface == "plain":
        base = np.array(_PLAINS[rng.integers(len(_PLAINS))], np.float32)
        shade = 1 + 0.04 * smooth_noise(rng, width, height, 3)
    else:
        raise ValueError(f"surface={surface!r} is not supported; accepted: {', '.join(SURFACES)}")
    return shade[..., None] * base


def camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting gradient, slight blur and sensor noise over a float RGB image; returns uint8 RGB."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (xx - width / 2) * np.cos(theta) + (yy - height / 2) * np.sin(theta)
    ramp /= max(float(np.abs(ramp).max()), 1.0)
    light = 1 + rng.uniform(0.08, 0.2) * ramp
    out = image * light[..., None]
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 0.9))
    out = out + rng.normal(0, rng.uniform(1.5, 4.0), out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
