"""What the pipeline takes as a frame: an HxWx3 uint8 RGB array. One check, shared by every stage's public entry."""

from __future__ import annotations

import numpy as np

MIN_SIDE = 8  # below this MobileSAM's 64x64 embedding has no pixel to say anything about


def check_image(image_rgb: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """The frame as a contiguous HxWx3 uint8 array, or a ValueError naming what is wrong and what is accepted."""
    if not isinstance(image_rgb, np.ndarray):
        raise ValueError(f"image: expected a numpy array, got {type(image_rgb).__name__}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"image: dtype {image_rgb.dtype} is not supported; accepted: uint8 RGB")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image: shape {image_rgb.shape} is not supported; accepted: (height, width, 3) RGB")
    if min(image_rgb.shape[:2]) < min_side:
        raise ValueError(
            f"image: {image_rgb.shape[1]}x{image_rgb.shape[0]} is too small; accepted: at least {min_side}x{min_side}"
        )
    return np.ascontiguousarray(image_rgb)
