"""Upstream AMG's small-region clean-up, computed on each mask's box instead of the whole frame.

mobile_sam's `remove_small_regions` fills the holes under an area and then drops the islands under it, labelling the
connected components of a whole frame, twice per mask. A mask lives inside its box and everything outside the box
is background, so the same components can be read from the box plus a one-pixel background margin: a background
component that reaches the margin is joined, in the frame, to all of the background outside the window, whose
size is known without looking at it. Only masks near the frame's edge (where the margin would leave the frame)
are cleaned on the whole frame, as upstream does.
"""

from __future__ import annotations

import cv2
import numpy as np

from promptbox.masks import BoxMasks

# Up to this many components are set box by box (_set_components); more, by one lookup over the window.
_FEW_COMPONENTS = 16


def clean(masks: BoxMasks, min_area: int) -> tuple[BoxMasks, np.ndarray]:
    """Each mask after upstream's remove_small_regions(mask, min_area, "holes") and then (..., "islands"), and an
    (N,) bool array: whether the clean-up changed it."""
    height, width = masks.frame_size
    windows, changed = [], np.zeros(len(masks), bool)
    for i in range(len(masks)):
        top, bottom, left, right, outside = _window(masks.boxes[i], height, width, min_area)
        mask = masks.window(i, top, bottom, left, right)
        if masks.areas[i] > 0:  # an empty mask has no island, and its one hole is the whole frame
            mask, holes = _fill_holes(mask, min_area, outside)
            mask, islands = _drop_islands(mask, min_area)
            changed[i] = holes or islands
        windows.append((mask, top, left))
    return BoxMasks.from_windows(windows, masks.frame_size), changed


def _window(box: np.ndarray, height: int, width: int, min_area: int) -> tuple[int, int, int, int, int]:
    """(top, bottom, left, right, outside): the box grown by at least one pixel, its corner on even coordinates
    (OpenCV labels 2x2 blocks, so components are numbered in the frame's order), and the background pixels outside
    it; the whole frame (outside 0) when the margin would leave the frame or the outside is itself small."""
    x0, y0, x1, y1 = (int(v) for v in box)
    top, left = (y0 - 1) // 2 * 2, (x0 - 1) // 2 * 2
    bottom, right = y1 + 1, x1 + 1
    outside = height * width - (bottom - top) * (right - left)
    if top <= 0 or left <= 0 or bottom >= height or right >= width or outside < min_area:
        return 0, height, 0, width, 0
    return top, bottom, left, right, outside


def _fill_holes(mask: np.ndarray, min_area: int, outside: int) -> tuple[np.ndarray, bool]:
    """upstream's "holes" mode on a window whose margin is background and `outside` more background pixels beyond
    it join the margin's component (0: the window is the frame)."""
    _, labels, stats = _components(~mask)
    sizes = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    if outside:
        sizes[int(labels[0, 0]) - 1] += outside  # the corner lies in the margin, outside the mask's box
    small = sizes < min_area
    if not small.any():
        return mask, False
    return _set_components(mask, labels, stats, np.flatnonzero(small) + 1, True), True


def _drop_islands(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """upstream's "islands" mode: the components under min_area go; if all of them are under it, the largest stays.
    Every island lies inside the window."""
    _, labels, stats = _components(mask)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = sizes < min_area
    if not small.any():
        return mask, False
    if small.all():
        return labels == int(np.argmax(sizes)) + 1, True
    return _set_components(mask, labels, stats, np.flatnonzero(small) + 1, False), True


def _set_components(mask: np.ndarray, labels: np.ndarray, stats: np.ndarray, components: np.ndarray, value: bool
                    ) -> np.ndarray:
    """A copy of the mask with the pixels of the labelled `components` set to `value`. A few components are set
    within their own boxes (a component under min_area has a small box, mostly): a lookup over the whole window,
    for every pixel, costs more."""
    if len(components) > _FEW_COMPONENTS:
        table = np.zeros(len(stats), bool)  # a lookup table, not np.isin
        table[components] = True
        return mask | table[labels] if value else mask & ~table[labels]
    out = mask.copy()
    for k in components:
        x, y, w, h = stats[k, :4]
        if value:
            out[y : y + h, x : x + w] |= labels[y : y + h, x : x + w] == k
        else:
            out[y : y + h, x : x + w] &= labels[y : y + h, x : x + w] != k
    return out


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, labels, stats) of the 8-connected components of a bool window, as
    cv2.connectedComponentsWithStats. Labels are 16-bit: half the memory to write, and two to three times faster on
    a 640x480 frame here. More than 65535 components (only pixel noise has them) make OpenCV raise; those are
    labelled in 32 bits."""
    binary = mask.astype(np.uint8)
    try:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_16U)
    except cv2.error:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_32S)
    return count, labels, stats
