"""small_regions.clean reads only each mask's box, and must still give upstream's full-frame answer."""

from __future__ import annotations

import numpy as np
import pytest
from mobile_sam.utils.amg import remove_small_regions

from promptbox import small_regions
from promptbox.masks import BoxMasks


def _upstream(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    mask, holes = remove_small_regions(mask, min_area, mode="holes")
    mask, islands = remove_small_regions(mask, min_area, mode="islands")
    return mask, holes or islands


def _blob(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An object with holes and specks: a filled ellipse, small holes punched in it, islands around it."""
    yy, xx = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ry, rx = rng.uniform(4, height / 4), rng.uniform(4, width / 4)
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    for _ in range(rng.integers(0, 6)):  # holes and islands of a few to a few hundred pixels
        y, x, r = rng.integers(0, height), rng.integers(0, width), rng.integers(1, 9)
        mask[max(0, y - r) : y + r, max(0, x - r) : x + r] ^= True
    return mask


def test_clean_matches_upstream_on_the_whole_frame():
    rng = np.random.default_rng(7)
    height, width, min_area = 96, 128, 60
    masks = [_blob(rng, height, width) for _ in range(200)]
    # The cases the window must get right: a hole that opens to the outside only through the margin, a mask on the
    # frame's edge, a box that nearly fills the frame (small outside), only small islands, a mask whose window's
    # margin is itself smaller than min_area, many small islands beside a large component, and an empty mask.
    ring = np.zeros((height, width), bool)
    ring[20:60, 30:90] = True
    ring[30:50, 40:80] = False  # a large hole: stays
    ring[38:42, 30:45] = False  # a channel from the hole to the box's edge: the hole is now background
    edge = np.zeros((height, width), bool)
    edge[0:30, 0:40] = True
    edge[10:14, 10:14] = False
    nearly_full = np.ones((height, width), bool)
    nearly_full[0, :] = nearly_full[:, 0] = nearly_full[-1, :] = nearly_full[:, -1] = False
    nearly_full[40:43, 60:63] = False
    specks = np.zeros((height, width), bool)
    specks[10:13, 10:13] = specks[50:55, 70:75] = True
    tiny = np.zeros((height, width), bool)  # its window's margin holds fewer than min_area pixels
    tiny[40:43, 60:63] = True
    speckled = np.zeros((height, width), bool)  # a large component and more small islands than go box by box
    speckled[20:60, 20:60] = True
    speckled[70::4, 10:120:4] = True
    speckled[30:34, 40:44] = False  # and a hole
    masks += [ring, edge, nearly_full, specks, tiny, speckled, np.zeros((height, width), bool)]
    fixed, changed = small_regions.clean(BoxMasks.from_masks(masks, (height, width)), min_area)
    expected = [_upstream(m, min_area) for m in masks]
    assert np.array_equal(changed, [c for _, c in expected])
    assert np.array_equal(fixed.to_dense(), np.stack([m for m, _ in expected]))
    # The case under test occurs: cleaned in a window, and the clean-up changed masks in both directions.
    windowed = [small_regions._window(b, height, width, min_area)[4] > 0 for b in fixed.boxes]
    assert sum(windowed) > 50 and changed.sum() > 50 and (~changed).sum() > 20
    grew = [m.sum() > o.sum() for m, o in zip(fixed.to_dense(), masks, strict=True)]
    shrank = [m.sum() < o.sum() for m, o in zip(fixed.to_dense(), masks, strict=True)]
    assert any(grew) and any(shrank)


@pytest.mark.parametrize("box, expected", [
    ((10, 11, 20, 30), (10, 31, 8, 21)),  # grown by a pixel, the corner on even coordinates
    ((1, 11, 20, 30), (0, 96, 0, 128)),  # the margin would leave the frame: the whole frame
    ((10, 11, 128, 30), (0, 96, 0, 128)),
])
def test_window(box, expected):
    assert small_regions._window(np.array(box), 96, 128, 60)[:4] == expected


def test_from_windows_places_each_window_in_the_frame():
    window = np.zeros((4, 5), bool)
    window[1:3, 2:4] = True
    masks = BoxMasks.from_windows([(window, 10, 20)], (32, 40))
    expected = np.zeros((32, 40), bool)
    expected[11:13, 22:24] = True
    assert np.array_equal(masks.full(0), expected)
    assert masks.boxes.tolist() == [[22, 11, 24, 13]]
    with pytest.raises(ValueError, match="inside the"):
        BoxMasks.from_windows([(window, 30, 20)], (32, 40))


def test_more_components_than_16_bit_labels_hold():
    # Isolated pixels on every other row and column of a 640x480 frame: 76800 islands, and a hole for each pixel
    # between them in the inverse. Labels are 16-bit until OpenCV says they overflow; then 32-bit, same answer.
    specks = np.zeros((480, 640), bool)
    specks[::2, ::2] = True
    count, _, _ = small_regions._components(specks)
    assert count - 1 == 76800 > 65535  # the case occurs
    masks = [specks, ~specks]
    fixed, changed = small_regions.clean(BoxMasks.from_masks(masks, (480, 640)), 2)
    expected = [_upstream(m, 2) for m in masks]
    assert np.array_equal(changed, [c for _, c in expected]) and changed.all()
    assert np.array_equal(fixed.to_dense(), np.stack([m for m, _ in expected]))
