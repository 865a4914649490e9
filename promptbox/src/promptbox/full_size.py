"""Low-res mask logits to full-size masks: sam.postprocess_masks' resize (upsample to the encoder's input, crop,
resize to the frame) as two matrices, with upstream's stability score and boxes.

Bilinear resizing makes each full-size logit a weighted mean of a few low-res logits, with weights >= 0 that sum
to 1. So where every low-res logit a full-size pixel reads lies at or below the stability score's lower level
(threshold - offset), that pixel does too: it is in no mask and in neither of the score's counts. On CPU each mask is
therefore resized only over the full-size rows and columns its logits above that level reach: an object a tenth of
the frame wide costs a tenth of the arithmetic. GPUs resize the whole batch in two matmuls instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from mobile_sam.utils.amg import batched_mask_to_box, calculate_stability_score

from promptbox.encoder_grid import CELL_PX


@dataclass(frozen=True)
class ResizeMaps:
    """The resize of one frame geometry: full = to_rows @ low_res[:rows, :cols] @ to_cols."""

    rows: int  # low-res rows that reach the frame (the rest are padding)
    cols: int
    to_rows: torch.Tensor  # (H, rows)
    to_cols: torch.Tensor  # (cols, W)
    # Per low-res row (column), the first and last frame row (column) it has weight in: (rows, 2), (cols, 2).
    row_reach: np.ndarray
    col_reach: np.ndarray


@dataclass(frozen=True)
class FullSize:
    """Full-size masks of M low-res logit maps."""

    masks: torch.Tensor  # (M, H, W) bool: logits > threshold
    stability: torch.Tensor  # (M,) float32, upstream's calculate_stability_score
    boxes: torch.Tensor  # (M, 4) int64 xyxy with inclusive max, [0, 0, 0, 0] for an empty mask (batched_mask_to_box)


def resize_maps(input_size: tuple[int, int], original_size: tuple[int, int], grid: tuple[int, int],
                device: str | torch.device) -> ResizeMaps:
    """Built by running sam.postprocess_masks' own interpolations (bilinear = linear per axis) on identity rows:
    low-res masks are 4 px a cell, the encoder's input CELL_PX a cell (1024 for the square's 64 cells)."""
    maps = []
    for axis in range(2):
        low = 4 * grid[axis]
        basis = torch.eye(low, device=device)[None]
        up = F.interpolate(basis, CELL_PX * grid[axis], mode="linear", align_corners=False)
        up = up[..., : input_size[axis]]
        up = F.interpolate(up, original_size[axis], mode="linear", align_corners=False)[0]  # (low, full)
        used = int(torch.nonzero(up.abs().sum(dim=1)).max()) + 1
        weights = up[:used]
        nonzero = (weights != 0).cpu().numpy()
        reach = np.stack([nonzero.argmax(axis=1), nonzero.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)], axis=1)
        maps.append((used, weights, reach))
    (rows, to_rows_t, row_reach), (cols, to_cols, col_reach) = maps
    return ResizeMaps(rows, cols, to_rows_t.T.contiguous(), to_cols.contiguous(), row_reach, col_reach)


def full_size(maps: ResizeMaps, low_res: torch.Tensor, threshold: float, offset: float) -> FullSize:
    """The masks, stability scores and boxes of (M, >= rows, >= cols) low-res logits: over each mask's reach on CPU,
    as one batch elsewhere. Both give the batch's values."""
    low_res = low_res[:, : maps.rows, : maps.cols]
    if low_res.device.type != "cpu" or len(low_res) == 0:
        return _whole_frames(maps, low_res, threshold, offset)
    height, width = maps.to_rows.shape[0], maps.to_cols.shape[1]
    masks = torch.zeros(len(low_res), height, width, dtype=torch.bool)
    # Nothing above the lower level anywhere: an empty mask, scored 0 / 0 as upstream scores it.
    stability = torch.full((len(low_res),), float("nan"))
    boxes = torch.zeros(len(low_res), 4, dtype=torch.int64)
    reaches = (low_res > threshold - offset).cpu().numpy()
    for m, reach in enumerate(reaches):
        rows, cols = np.flatnonzero(reach.any(axis=1)), np.flatnonzero(reach.any(axis=0))
        if len(rows) == 0:
            continue
        top, bottom = maps.row_reach[rows[0], 0], maps.row_reach[rows[-1], 1] + 1
        left, right = maps.col_reach[cols[0], 0], maps.col_reach[cols[-1], 1] + 1
        logits = maps.to_rows[top:bottom] @ (low_res[m] @ maps.to_cols[:, left:right])
        mask = logits > threshold
        masks[m, top:bottom, left:right] = mask
        # Upstream's score and box, on the only pixels that can count; the box moved from the reach to the frame.
        stability[m] = calculate_stability_score(logits, threshold, offset)
        if mask.any():
            boxes[m] = batched_mask_to_box(mask) + torch.tensor([left, top, left, top])
    return FullSize(masks, stability, boxes)


def _whole_frames(maps: ResizeMaps, low_res: torch.Tensor, threshold: float, offset: float) -> FullSize:
    logits = maps.to_rows @ (low_res @ maps.to_cols)
    masks = logits > threshold
    return FullSize(masks, calculate_stability_score(logits, threshold, offset), batched_mask_to_box(masks))
