"""BoxMasks against plain numpy on dense stacks: every answer it gives from its packed crops must be the dense one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mobile_sam.utils.amg import batched_mask_to_box

from promptbox.masks import BoxMasks
from promptbox.regions import CONTAIN_FRACTION, CONTAIN_GROWTH, Regions

H, W = 37, 53  # odd sizes: crop widths that are not whole bytes, rows that need padding


def hand_made() -> np.ndarray:
    masks = np.zeros((9, H, W), bool)
    masks[0, 5:20, 10:30] = True  # a block inside the frame
    masks[1, 12:30, 25:50] = True  # overlaps the block's corner
    masks[1, 20:25, 30:40] = False  # with a hole
    masks[2, 0:8, 0:11] = True  # touches the top and left edges
    masks[3, 30:, 45:] = True  # touches the bottom and right edges
    masks[4, :, :] = True  # the whole frame
    masks[4, 10:12, 20:22] = False
    masks[5, 0, W - 1] = masks[5, H - 1, 0] = True  # two corner pixels: a box spanning the frame, nearly empty
    masks[6] = False  # empty
    masks[7, 6:19:2, 11:29:2] = True  # a grid inside the block's box, between the block's...
    masks[8, 6:19:2, 12:29:2] = True  # ...and this one's pixels: boxes overlap, pixels never meet
    return masks


def random_masks(rng: np.random.Generator, n: int) -> np.ndarray:
    masks = np.zeros((n, H, W), bool)
    for k in range(n):
        y0, x0 = rng.integers(0, H), rng.integers(0, W)
        y1, x1 = rng.integers(y0, H + 1), rng.integers(x0, W + 1)
        masks[k, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.7
    return masks


@pytest.fixture(scope="module")
def dense() -> np.ndarray:
    return np.concatenate([hand_made(), random_masks(np.random.default_rng(3), 12)])


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return (0, 0, 0, 0) if len(ys) == 0 else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_the_hand_made_cases_are_what_they_claim():
    masks = hand_made()
    assert masks[2, 0].any() and masks[2, :, 0].any() and masks[3, -1].any() and masks[3, :, -1].any()
    assert not masks[6].any()
    a, b = tight_box(masks[7]), tight_box(masks[8])
    assert max(a[0], b[0]) < min(a[2], b[2]) and max(a[1], b[1]) < min(a[3], b[3])  # boxes overlap...
    assert not (masks[7] & masks[8]).any()  # ...pixels don't
    assert (masks[0] & masks[1]).any() and not (masks[2] & masks[3]).any()


def test_round_trip_crops_boxes_and_areas(dense):
    masks = BoxMasks.from_dense(dense)
    assert len(masks) == len(dense) and masks.shape == dense.shape and masks.frame_size == (H, W)
    np.testing.assert_array_equal(masks.to_dense(), dense)
    np.testing.assert_array_equal(masks.areas, dense.sum(axis=(1, 2)))
    for i, mask in enumerate(dense):
        assert tuple(masks.boxes[i]) == tight_box(mask)
        x0, y0, x1, y1 = masks.boxes[i]
        np.testing.assert_array_equal(masks.crop(i), mask[y0:y1, x0:x1])
        full = masks.full(i)
        assert full.dtype == bool and full.shape == (H, W)
        np.testing.assert_array_equal(full, mask)
    assert masks.crop(6).shape == (0, 0)
    # Proposal boxes keep upstream's inclusive maximum: the crops give batched_mask_to_box's boxes, empty ones 0.
    np.testing.assert_array_equal(masks.inclusive_boxes(), batched_mask_to_box(torch.from_numpy(dense)).numpy())


def test_from_packed_rows_and_from_masks_one_at_a_time(dense):
    packed = np.packbits(dense.reshape(len(dense), -1), axis=1)
    np.testing.assert_array_equal(BoxMasks.from_packed(packed, (H, W)).to_dense(), dense)
    # With each mask's inclusive box only its rows are unpacked (rows of 53 px start mid-byte), empty masks too.
    boxes = batched_mask_to_box(torch.from_numpy(dense)).numpy()
    banded = BoxMasks.from_packed(packed, (H, W), boxes)
    np.testing.assert_array_equal(banded.to_dense(), dense)
    np.testing.assert_array_equal(banded.boxes, BoxMasks.from_dense(dense).boxes)
    np.testing.assert_array_equal(BoxMasks.from_masks((m for m in dense), (H, W)).to_dense(), dense)
    with pytest.raises(ValueError, match=r"accepted: \(37, 53\)"):
        BoxMasks.from_masks([np.zeros((H, W + 1), bool)], (H, W))


def test_pairwise_intersection_iou_and_containment_equal_dense(dense):
    masks = BoxMasks.from_dense(dense)
    flat = dense.reshape(len(dense), -1).astype(np.int64)
    inter = flat @ flat.T
    area = flat.sum(axis=1)
    union = area[:, None] + area[None, :] - inter
    for i in range(len(dense)):
        np.testing.assert_array_equal(masks.intersection(i), inter[i])
        np.testing.assert_allclose(masks.iou(i), np.where(union[i] > 0, inter[i] / np.maximum(union[i], 1), 0.0))
        share = inter[i] / area[i] if area[i] else np.zeros(len(dense))
        np.testing.assert_allclose(masks.containment(i), share)
    # The cases that must come out empty: disjoint boxes, and overlapping boxes whose pixels never meet.
    assert masks.intersection(2, [3])[0] == 0 and masks.intersection(7, [8])[0] == 0
    assert masks.iou(7, [8])[0] == 0.0 and masks.containment(6, [4])[0] == 0.0 and masks.iou(6, [6])[0] == 0.0
    # A subset of js, in any order, and js of another set of the same frame.
    js = np.array([4, 0, 1])
    np.testing.assert_array_equal(masks.intersection(1, js), inter[1, js])
    others = BoxMasks.from_dense(dense[::-1])
    np.testing.assert_array_equal(masks.intersection(0, None, others), inter[0, ::-1])
    with pytest.raises(ValueError, match="frame"):
        masks.intersection(0, None, BoxMasks.from_dense(np.zeros((1, H, W + 1), bool)))


def test_windows_of_the_frame(dense):
    masks = BoxMasks.from_dense(dense)
    rng = np.random.default_rng(5)
    windows = [(0, H, 0, W), (0, 0, 0, 0), (H - 1, H, W - 1, W), (0, 3, 0, 3), (30, H, 40, W), (6, 7, 11, 12)]
    windows += [(int(t), int(b), int(left), int(r)) for t, b, left, r in
                (sorted(rng.integers(0, H + 1, 2)) + sorted(rng.integers(0, W + 1, 2)) for _ in range(30))]
    for i, mask in enumerate(dense):
        for top, bottom, left, right in windows:
            np.testing.assert_array_equal(masks.window(i, top, bottom, left, right), mask[top:bottom, left:right])
    with pytest.raises(ValueError, match="inside the 37x53 frame"):
        masks.window(0, -1, 3, 0, 3)


def test_subsets_index_like_the_dense_stack(dense):
    masks = BoxMasks.from_dense(dense)
    for index in ([3, 0, 3], np.array([5, 1]), slice(2, 9, 3), dense.any(axis=(1, 2)), []):
        sub = masks[index]
        assert isinstance(sub, BoxMasks)
        np.testing.assert_array_equal(sub.to_dense(), dense[index])
        np.testing.assert_array_equal(sub.areas, dense[index].sum(axis=(1, 2)))
    np.testing.assert_array_equal(masks.to_dense([4, 2]), dense[[4, 2]])
    assert masks[[]].to_dense().shape == (0, H, W)
    with pytest.raises(TypeError, match="full"):
        masks[0]
    with pytest.raises(TypeError):
        iter(masks)  # would build every full frame unasked


def test_concatenate_and_empty(dense):
    masks = BoxMasks.from_dense(dense)
    both = BoxMasks.concatenate([masks[:4], BoxMasks.empty((H, W)), masks[4:]])
    np.testing.assert_array_equal(both.to_dense(), dense)
    assert len(BoxMasks.empty((H, W))) == 0 and BoxMasks.empty((H, W)).shape == (0, H, W)
    with pytest.raises(ValueError, match="one frame"):
        BoxMasks.concatenate([masks, BoxMasks.empty((H + 1, W))])


def test_stored_packed_and_cropped_and_read_only(dense):
    masks = BoxMasks.from_dense(dense)
    held = [masks.boxes, masks.areas, *masks._rows]
    assert all(a.ndim <= 2 for a in held)  # no stack, no full frame
    assert masks.nbytes == sum(a.nbytes for a in held)
    # Packed crops: at most a byte per 8 pixels of a row of its box (rows pad to whole bytes), plus boxes and areas.
    widths, heights = masks.boxes[:, 2] - masks.boxes[:, 0], masks.boxes[:, 3] - masks.boxes[:, 1]
    assert sum(r.nbytes for r in masks._rows) == int((heights * -(-widths // 8)).sum())
    assert masks.nbytes < dense.nbytes / 4
    with pytest.raises(ValueError, match="read-only"):
        masks.boxes[0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        masks._rows[0][0, 0] = 1


def test_regions_containers_are_the_dense_rule(dense):
    """Regions counts overlaps on the crops; its part-of answers must be those of the dense rule."""
    regions = Regions(BoxMasks.from_dense(dense))
    area = dense.sum(axis=(1, 2))
    for i in range(len(dense)):
        want = [j for j in range(len(dense)) if j != i and area[i] > 0 and area[j] >= CONTAIN_GROWTH * area[i]
                and (dense[i] & dense[j]).sum() >= CONTAIN_FRACTION * area[i]]
        assert regions.containers(i) == want
    assert any(regions.containers(i) for i in range(len(dense)))  # the rule is exercised, not vacuous
    np.testing.assert_array_equal(Regions(dense).area, area)  # a dense stack is accepted too
