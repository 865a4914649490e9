"""The crops CLIP scores a region by: a square around the region's box with context, masked to the region, in
CLIP's normalised space, resized to the image tower's input.

The square keeps the object undistorted and whole. Outside the mask (and outside the frame) pixels become CLIP's
mean colour (0 in normalised space): the crop shows the object, not its neighbours, so a mask of a whole object is
not outscored by its parts because the parts' crops happen to include the rest of the object. Masking happens at
source resolution before resizing, so pixels outside the mask cannot leak into the crop.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from promptbox.masks import BoxMasks

# Unmasked crops of one size are gathered as one batch up to this many source pixels a crop batch (32 windows of
# 128 px: 0.5 M); larger ones go one by one, so a batch of large crops never holds a frame's worth of pixels each.
GATHER_PIXELS = 2**21


class Square(NamedTuple):
    """A crop's window in source pixels; it may reach outside the frame."""

    left: int
    top: int
    size: int


def square_around(box: np.ndarray, context_pad: float) -> Square:
    """The square around an xyxy box with `context_pad` of the box's longer side on each side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    size = max(1, round(max(x1 - x0, y1 - y0, 1.0) * (1.0 + 2.0 * context_pad)))
    return Square(math.floor((x0 + x1) / 2 - size / 2), math.floor((y0 + y1) / 2 - size / 2), size)


def crops(frame: torch.Tensor, boxes: np.ndarray, masks: BoxMasks | None, first: int, context_pad: float,
          image_size: int) -> torch.Tensor:
    """(B, 3, image_size, image_size) crops of `boxes` from a normalised (3, H, W) frame, mask `first + i` over crop
    i. Unmasked crops of one size (fast mode's windows) are gathered and resized as one batch: the same pixels,
    without a resize call per crop."""
    squares = [square_around(box, context_pad) for box in boxes]
    size = squares[0].size
    if masks is None and all(s.size == size for s in squares) and len(squares) * size * size <= GATHER_PIXELS:
        return resized(gathered(frame, squares), image_size)
    return torch.cat([crop(frame, square, masks, first + i, image_size) for i, square in enumerate(squares)])


def crop(frame: torch.Tensor, square: Square, masks: BoxMasks | None, i: int, image_size: int) -> torch.Tensor:
    """(1, 3, image_size, image_size): the frame in `square`, mask `i` of `masks` over it, 0 outside."""
    height, width = frame.shape[-2:]
    left, top, size = square
    canvas = frame.new_zeros(3, size, size)
    ix0, iy0 = max(left, 0), max(top, 0)
    ix1, iy1 = min(left + size, width), min(top + size, height)
    if ix1 > ix0 and iy1 > iy0:
        patch = frame[:, iy0:iy1, ix0:ix1]
        if masks is not None:  # mask i over this window only, from its crop: never a full frame
            patch = patch * torch.from_numpy(masks.window(i, iy0, iy1, ix0, ix1)).to(frame.device)
        canvas[:, iy0 - top : iy1 - top, ix0 - left : ix1 - left] = patch
    return resized(canvas[None], image_size)


def gathered(frame: torch.Tensor, squares: list[Square]) -> torch.Tensor:
    """(B, 3, S, S) the frame's pixels in squares of one size S, 0 outside the frame: what `crop` paints on its
    canvas, for a batch, in one indexing operation."""
    height, width = frame.shape[-2:]
    steps = torch.arange(squares[0].size, device=frame.device)
    lefts = torch.tensor([s.left for s in squares], device=frame.device)
    tops = torch.tensor([s.top for s in squares], device=frame.device)
    rows, cols = tops[:, None] + steps, lefts[:, None] + steps  # (B, S) each
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    pixels = frame[:, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]]  # (3, B, S, S)
    return pixels.permute(1, 0, 2, 3) * inside[:, None]


def resized(canvases: torch.Tensor, image_size: int) -> torch.Tensor:
    return F.interpolate(canvases, size=(image_size, image_size), mode="bilinear", antialias=True,
                         align_corners=False)
