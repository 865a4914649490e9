"""Fast mode's commands that compare instances ("on the left", "next to") are matched on exact mode's masks plus the
masks of the phrase's own map prompts that repeat none of them: the grid looks everywhere and can miss an instance
that the map, which looks for the phrase, lands on. World MobileSAM and CLIP, on a world frame where that happens."""

from __future__ import annotations

import numpy as np
import pytest

from promptbox.detection import Detection
from promptbox.evaluation.metrics import box_iou
from promptbox.locator import _with_new
from promptbox.masks import BoxMasks
from promptbox.proposals import Proposals
from promptbox.world import generate_scene

# The world eval's scene 6 (val, seed 20261123): two scissors and a book; exact mode's grid proposes no mask of
# the purple scissors, the left ones, which lie against the book.
SEED, INDEX = 20261123, 6


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SEED, INDEX, (640, 480), split="val")


def _left_scissors(scene) -> np.ndarray:
    scissors = sorted((o.box_xyxy for o in scene.objects if o.cls == "scissors"), key=lambda b: b[0] + b[2])
    assert len(scissors) == 2  # the case under test: two instances to compare
    return np.add(scissors[0], [0, 0, 1, 1])  # pixel edges, as answers are


@pytest.mark.parametrize("command", ["take the scissors on the left", "grab the scissors next to the book"])
def test_an_instance_only_the_map_finds_takes_part_in_the_comparison(world_locator, scene, command):
    left = _left_scissors(scene)
    frame = world_locator.prepare(scene.image)
    exact = world_locator._exact_proposals(frame)
    # The case under test: exact mode's masks hold no mask of the scissors meant.
    assert max(box_iou(left, box) for box in exact.boxes_xyxy + np.array([0, 0, 1, 1])) < 0.5

    result = world_locator.locate(scene.image, command, frame=frame)
    assert isinstance(result, Detection), result.reason
    assert box_iou(left, result.box_xyxy) >= 0.5, (result.box_xyxy, left)


def test_a_part_request_keeps_exact_modes_masks_alone(world_locator, scene):
    """Part requests compare the regions inside their whole and stay on exact mode's masks: with the prompts' masks
    added, world MobileSAM boxed wrong regions for two part requests of the world eval."""
    frame = world_locator.prepare(scene.image)
    calls = []
    original = world_locator.matcher.similarity_map  # fast mode's prompts come from its map
    world_locator.matcher.similarity_map = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    try:
        world_locator.locate(scene.image, "take the handle of the scissors", frame=frame)
        assert not calls
        world_locator.locate(scene.image, "take the scissors on the left", frame=frame)
        assert len(calls) == 1
    finally:
        del world_locator.matcher.similarity_map


def _proposals(boxes: list[tuple[int, int, int, int]]) -> Proposals:
    masks = np.zeros((len(boxes), 40, 40), bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
        mask[y0:y1, x0:x1] = True
    box_masks = BoxMasks.from_dense(masks)
    ones = np.ones(len(boxes), np.float32)
    return Proposals(box_masks, box_masks.inclusive_boxes().astype(np.float32), ones, ones, {"decoder": 1.0})


def test_a_mask_that_repeats_one_of_exact_modes_is_left_out():
    exact = _proposals([(0, 0, 10, 10), (20, 20, 30, 30)])
    # The same mask as exact's first; one at IoU 0.9 with its second; one at IoU 0.5 with it; one elsewhere.
    extra = _proposals([(0, 0, 10, 10), (20, 20, 30, 29), (20, 25, 30, 30), (32, 0, 40, 8)])
    merged = _with_new(exact, extra, duplicate_iou=0.7)
    assert len(merged) == 4  # the two of exact mode, then the half-overlapping one and the new one
    assert np.array_equal(merged.boxes_xyxy[2:], extra.boxes_xyxy[2:])
    assert np.array_equal(merged.masks.to_dense()[:2], exact.masks.to_dense())
    assert set(merged.timings_ms) == {"decoder", "prompts decoder"}
    # Nothing new: exact mode's masks alone; no exact mask (an empty grid): every prompt's mask.
    assert np.array_equal(_with_new(exact, _proposals([(20, 20, 30, 30)]), 0.7).boxes_xyxy, exact.boxes_xyxy)
    assert len(_with_new(_proposals([]), extra, 0.7)) == len(extra)
