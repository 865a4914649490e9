"""Regions of one frame as masks: their areas, and which regions contain which (the part-of relation that
whole-over-parts, part requests and the matching shortlist all use)."""

from __future__ import annotations

import numpy as np

# A region is a part of another when the other covers nearly all of it and is clearly bigger.
CONTAIN_FRACTION = 0.9
CONTAIN_GROWTH = 1.2


class Regions:
    """Mask areas and containment. Overlaps are counted only for candidates big enough to contain, inside the part's
    bounding box: a full N x N overlap matrix of 720p masks would cost N*N*H*W."""

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks
        # count_nonzero per mask is about 3x faster than a bool sum over the (N, H*W) stack.
        self.area = np.array([np.count_nonzero(m) for m in masks], dtype=np.int64)

    def containers(self, i: int, among: list[int] | np.ndarray | None = None) -> list[int]:
        """Regions (of `among`, default all) that contain region i: |i∩j| >= 0.9|i| and |j| >= 1.2|i|."""
        if self.area[i] == 0:
            return []
        candidates = np.arange(len(self.area)) if among is None else np.asarray(among, dtype=np.int64)
        candidates = candidates[(candidates != i) & (self.area[candidates] >= CONTAIN_GROWTH * self.area[i])]
        if candidates.size == 0:
            return []
        rows = np.flatnonzero(self.masks[i].any(axis=1))
        cols = np.flatnonzero(self.masks[i].any(axis=0))
        ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        inter = (self.masks[candidates, ys, xs] & self.masks[i, ys, xs]).reshape(candidates.size, -1).sum(axis=1)
        return [int(j) for j in candidates[inter >= CONTAIN_FRACTION * self.area[i]]]
