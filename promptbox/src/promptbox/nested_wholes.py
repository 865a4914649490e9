"""Wholes that box NMS removed, restored when they contain a mask it kept.

Box NMS compares boxes, and an elongated whole (a screwdriver) has nearly its long part's box, so NMS keeps one of
the two, often the part. A removed mask comes back when it contains a kept mask (covers >= 90% of it and is
>= 1.2x its area, selection's own part rule) and duplicates (mask IoU >= the NMS threshold) no kept or already
restored mask that it does not contain. Upstream AMG does not do this.

The rule needs intersections of mask pairs. On the host they are counted on the bit-packed crops, only for the
pairs that box tests leave open (PackedOverlaps); on a GPU, where the decoder's full-size masks still are, every
pair is counted in one matrix product (DenseOverlaps).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from promptbox.masks import BoxMasks

CONTAINS = 0.9  # share of a kept mask that a whole covers
LARGER = 1.2  # and how much larger the whole is


class Overlaps(Protocol):
    """Pixel intersections of removed mask i with kept masks, or with other removed masks."""

    def with_kept(self, i: int, js: np.ndarray) -> np.ndarray: ...

    def with_removed(self, i: int, js: np.ndarray) -> np.ndarray: ...


def restore(kept_boxes: np.ndarray, kept_area: np.ndarray, boxes: np.ndarray, area: np.ndarray,
            predicted_iou: np.ndarray, duplicate_iou: float, overlaps: Overlaps) -> list[int]:
    """Indices of the removed masks to restore, best predicted IoU first. Kept masks: (K, 4) inclusive xyxy boxes
    and areas; removed masks: (R, 4) inclusive boxes, areas and predicted IoU; `overlaps` counts their pixels."""
    if len(kept_area) == 0 or len(area) == 0:
        return []
    kept_boxes = np.asarray(kept_boxes, np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    kept_area, area = np.asarray(kept_area), np.asarray(area)
    # Only kept masks whose box lies inside a removed one's (2 px slack) and that are clearly smaller can be its
    # parts: every pair at once, (R, K), so the removed masks with none cost no step of the loop.
    inside = ((kept_boxes[None, :, 0] >= boxes[:, None, 0] - 2) & (kept_boxes[None, :, 1] >= boxes[:, None, 1] - 2)
              & (kept_boxes[None, :, 2] <= boxes[:, None, 2] + 2) & (kept_boxes[None, :, 3] <= boxes[:, None, 3] + 2)
              & (area[:, None] >= LARGER * kept_area[None, :]) & (kept_area[None, :] > 0))
    chosen: list[int] = []
    for i in np.argsort(-np.asarray(predicted_iou), kind="stable"):
        parts = np.flatnonzero(inside[i])
        if len(parts) == 0 or not (overlaps.with_kept(int(i), parts) >= CONTAINS * kept_area[parts]).any():
            continue
        box = boxes[i]
        # The masks it could duplicate: the kept ones and those restored before it. Mask IoU is at most
        # min(box overlap, both areas) / max(both areas): only masks that can reach duplicate_iou are intersected.
        others_boxes = np.concatenate([kept_boxes, boxes[chosen]])
        others_area = np.concatenate([kept_area, area[chosen]])
        overlap = (np.clip(np.minimum(others_boxes[:, 2], box[2]) - np.maximum(others_boxes[:, 0], box[0]) + 1, 0,
                           None)
                   * np.clip(np.minimum(others_boxes[:, 3], box[3]) - np.maximum(others_boxes[:, 1], box[1]) + 1, 0,
                             None))
        bound = np.minimum(np.minimum(overlap, others_area), area[i])
        near = np.flatnonzero(bound >= duplicate_iou * np.maximum(others_area, area[i]))
        near_kept, near_chosen = near[near < len(kept_area)], near[near >= len(kept_area)] - len(kept_area)
        inter = np.concatenate([overlaps.with_kept(int(i), near_kept),
                                overlaps.with_removed(int(i), np.asarray(chosen, np.int64)[near_chosen])])
        union = others_area[near] + area[i] - inter
        # A whole overlaps its parts by design (up to 1/1.2 IoU); it duplicates only what it does not contain.
        holds = (inter >= CONTAINS * others_area[near]) & (area[i] >= LARGER * others_area[near])
        if ((inter >= duplicate_iou * np.maximum(union, 1)) & ~holds).any():
            continue
        chosen.append(int(i))
    return chosen


class PackedOverlaps:
    """Intersections on the host: the kept masks as BoxMasks, the removed ones bit-packed full frames (one per row,
    np.packbits of each flat mask) with their inclusive boxes; a removed mask is unpacked, into the crop of its own
    box, only when a pair needs it."""

    def __init__(self, kept: BoxMasks, packed: np.ndarray, boxes: np.ndarray) -> None:
        self.kept = kept
        self._packed, self._boxes = packed, np.asarray(boxes).reshape(-1, 4)
        self._unpacked: dict[int, BoxMasks] = {}

    def removed(self, i: int) -> BoxMasks:
        if i not in self._unpacked:
            self._unpacked[i] = BoxMasks.from_packed(self._packed[i : i + 1], self.kept.frame_size,
                                                     self._boxes[i : i + 1])
        return self._unpacked[i]

    def with_kept(self, i: int, js: np.ndarray) -> np.ndarray:
        return self.removed(i).intersection(0, js, self.kept)

    def with_removed(self, i: int, js: np.ndarray) -> np.ndarray:
        if len(js) == 0:
            return np.zeros(0, np.int64)
        others = BoxMasks.concatenate([self.removed(int(j)) for j in js])
        return self.removed(i).intersection(0, None, others)


# DenseOverlaps converts at most this many mask pixels to float32 at a time (256 MB).
_FLOAT_PIXELS = 64 * 1024 * 1024


class DenseOverlaps:
    """Intersections of full-frame masks where they are ((K, H, W) kept and (R, H, W) removed bool tensors, on a
    GPU): every pair at once, as a product of the flattened masks, summed over bands of pixels. float32 counts
    integers exactly up to 2^24 pixels, and TF32 rounding keeps 0 and 1 exact."""

    def __init__(self, kept: torch.Tensor, removed: torch.Tensor) -> None:
        if kept.shape[0] * removed.shape[0] == 0:
            self._kept = self._removed = np.zeros((removed.shape[0], 0), np.int64)
            return
        rows, others = removed.flatten(1), torch.cat([kept, removed]).flatten(1)
        band = max(1, _FLOAT_PIXELS // (len(rows) + len(others)))
        both = torch.zeros(len(rows), len(others), device=rows.device)
        for start in range(0, rows.shape[1], band):
            both += rows[:, start : start + band].float() @ others[:, start : start + band].float().T
        counts = both.round().to(torch.int64).cpu().numpy()
        self._kept, self._removed = counts[:, : kept.shape[0]], counts[:, kept.shape[0] :]

    def with_kept(self, i: int, js: np.ndarray) -> np.ndarray:
        return self._kept[i, js]

    def with_removed(self, i: int, js: np.ndarray) -> np.ndarray:
        return self._removed[i, js]
