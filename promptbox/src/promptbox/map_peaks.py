"""Fast mode's point prompts: where the phrase's similarity map (Matcher.similarity_map or window_map) peaks,
spread out."""

from __future__ import annotations

import numpy as np


def peak_points(heatmap: np.ndarray, original_size: tuple[int, int], k: int) -> np.ndarray:
    """k spread-out maxima of a coarse heat map, as (k, 2) x, y at the centres of their cells in source pixels
    (peak_cells' choice)."""
    heat = _checked(heatmap)
    chosen = peak_cells(heat, k)
    h, w = heat.shape
    rows, cols = np.divmod(chosen, w)
    height, width = original_size
    xy = np.stack([(cols + 0.5) * width / w, (rows + 0.5) * height / h], axis=1)
    return xy.astype(np.float32)


def peak_cells(heatmap: np.ndarray, k: int) -> np.ndarray:
    """k spread-out maxima of a heat map (h, w), as flat cell indices, best first.

    Local maxima (8-neighbourhood) first, strongest first, each at least a quarter of the map's shorter side from
    those already taken; if that yields fewer than k, the strongest remaining cells fill up.
    """
    heat = _checked(heatmap)
    if k < 1:
        return np.zeros(0, np.int64)
    h, w = heat.shape
    padded = np.pad(heat, 1, mode="constant", constant_values=-np.inf)
    neighbours = np.stack([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    is_peak = (heat >= neighbours.max(axis=0)).ravel()
    order = np.argsort(-heat.ravel(), kind="stable")
    radius = max(1.0, min(h, w) / 4.0)
    chosen: list[int] = []
    for candidate in [i for i in order if is_peak[i]]:
        y, x = divmod(int(candidate), w)
        if all((y - cy) ** 2 + (x - cx) ** 2 >= radius**2 for cy, cx in (divmod(c, w) for c in chosen)):
            chosen.append(int(candidate))
        if len(chosen) == k:
            break
    for candidate in order:  # too few distinct peaks: the strongest other cells
        if len(chosen) >= min(k, h * w):
            break
        if int(candidate) not in chosen:
            chosen.append(int(candidate))
    return np.array(chosen, dtype=np.int64)


def _checked(heatmap: np.ndarray) -> np.ndarray:
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"heatmap: shape {heat.shape} is not supported; accepted: (h, w) with h, w >= 1")
    return heat
