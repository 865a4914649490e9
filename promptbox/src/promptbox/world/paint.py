"""Colour for a label canvas: each part in its colour, darker towards its edges and lit from one side.

A flat fill would make every object a sticker; a rounded profile and a highlight give the shapes some volume, which
is what a proposal model and a colour word have to cope with on real objects.
"""

from __future__ import annotations

import cv2
import numpy as np

from promptbox.world.catalogue import COLOURS
from promptbox.world.shapes import Canvas


def shade(canvas: Canvas, colours: list[str]) -> np.ndarray:
    """An HxWx3 float32 RGB image of the canvas; `colours[i]` paints label i + 1. Outside the parts is 0."""
    full = np.zeros((*canvas.labels.shape, 3), np.float32)
    # Work on the drawn region only: the canvas is sized for the longest class, most of it is empty.
    # A margin of empty pixels, because distanceTransform counts the image border as inside.
    x, y, w, h = cv2.boundingRect((canvas.labels > 0).astype(np.uint8))
    x, y = max(0, x - 2), max(0, y - 2)
    w, h = min(canvas.labels.shape[1] - x, w + 4), min(canvas.labels.shape[0] - y, h + 4)
    labels = canvas.labels[y:y + h, x:x + w]
    out = full[y:y + h, x:x + w]
    rows = np.arange(y, y + h, dtype=np.float32)[:, None]
    for part, name in enumerate(colours, start=1):
        inside = labels == part
        if not inside.any():
            continue
        # Distance to the part's edge, normalised by its thickness: 0 at the rim, 1 along the ridge.
        dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
        ridge = dist / max(float(dist.max()), 1.0)
        profile = 0.62 + 0.38 * np.sqrt(np.clip(ridge / 0.7, 0, 1))
        # Light from the -y side: a gentle ramp across the part plus a soft highlight band on the lit half.
        centre_row = float(rows[:, 0][inside.any(axis=1)].mean())
        across = np.clip((centre_row - rows) / max(float(dist.max()), 1.0), -1, 1)
        ramp = 1 + 0.12 * across
        highlight = 45 * np.exp(-(((ridge - 0.65) / 0.15) ** 2)) * np.clip(across, 0, 1)
        rgb = np.array(COLOURS[name], np.float32)
        colour = rgb * (profile * ramp)[..., None] + highlight[..., None]
        out[inside] = colour[inside]
    for polygon, brightness in canvas.marks:
        region = np.zeros(labels.shape, np.uint8)
        cv2.fillPoly(region, [np.round((polygon - (x, y)) * 16).astype(np.int32)], 1, shift=4)
        region = (region > 0) & (labels > 0)
        out[region] = out[region] * brightness + (20 if brightness > 1 else 0)
    return np.clip(full, 0, 255)
