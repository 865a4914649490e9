"""Regions of one frame as masks: their areas, and which regions contain which (the part-of relation that
whole-over-parts, part requests and the matching shortlist all use)."""

from __future__ import annotations

import numpy as np

from promptbox.masks import BoxMasks

# A region is a part of another when the other covers nearly all of it and is clearly bigger.
CONTAIN_FRACTION = 0.9
CONTAIN_GROWTH = 1.2


class Regions:
    """Mask areas and containment. Overlaps are counted only for candidates big enough to contain, on the overlap
    of the two masks' boxes: a full N x N overlap matrix of 720p masks would cost N*N*H*W."""

    def __init__(self, masks: BoxMasks | np.ndarray) -> None:
        """`masks`: BoxMasks, or an (N, H, W) bool stack (stored as BoxMasks)."""
        self.masks = masks if isinstance(masks, BoxMasks) else BoxMasks.from_dense(np.asarray(masks, dtype=bool))
        self.area = self.masks.areas

    def containers(self, i: int, among: list[int] | np.ndarray | None = None) -> list[int]:
        """Regions (of `among`, default all) that contain region i: |i∩j| >= 0.9|i| and |j| >= 1.2|i|."""
        if self.area[i] == 0:
            return []
        candidates = np.arange(len(self.area)) if among is None else np.asarray(among, dtype=np.int64)
        candidates = candidates[(candidates != i) & (self.area[candidates] >= CONTAIN_GROWTH * self.area[i])]
        if candidates.size == 0:
            return []
        inter = self.masks.intersection(i, candidates)
        return [int(j) for j in candidates[inter >= CONTAIN_FRACTION * self.area[i]]]
