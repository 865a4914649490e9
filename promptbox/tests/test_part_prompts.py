"""part_prompts.spread_points: points that cover every part of a whole's mask, thin ones included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promptbox import part_prompts
from promptbox.detection import Detection, NotFound
from promptbox.locator import Locator
from promptbox.masks import BoxMasks


def _screwdriver() -> np.ndarray:
    """A thick handle (rows 100-130) and a 4 px shaft running far to the right, with a small tip at its end."""
    mask = np.zeros((240, 320), bool)
    mask[100:130, 40:100] = True  # handle: 1800 px
    mask[113:117, 100:280] = True  # shaft: 720 px, 4 px thin
    mask[110:120, 280:290] = True  # tip
    return mask


def test_points_lie_on_the_mask_and_reach_its_thin_far_end():
    masks = BoxMasks.from_dense(np.stack([np.zeros((240, 320), bool), _screwdriver()]))
    points = part_prompts.spread_points(masks, 1, count=12)
    assert points.shape == (12, 2)
    mask = _screwdriver()
    cols, rows = points[:, 0].astype(int), points[:, 1].astype(int)
    assert mask[rows, cols].all()  # every point on the object
    # The shaft is a sixth of the pixels but half the length: farthest-point spacing still puts points along it,
    # and on the tip; a grid over the box would mostly miss a 4 px shaft.
    assert (cols >= 100).sum() >= 4 and (cols >= 280).any() and (cols < 100).sum() >= 2
    assert np.array_equal(points, part_prompts.spread_points(masks, 1, count=12))  # deterministic
    assert len(part_prompts.spread_points(masks, 0)) == 0  # an empty mask has no points


def test_a_mask_smaller_than_the_count_gives_each_pixel_once():
    mask = np.zeros((20, 20), bool)
    mask[5, 5:8] = True
    points = part_prompts.spread_points(BoxMasks.from_dense(mask[None]), 0, count=12)
    assert sorted(points[:, 0].tolist()) == [5.5, 6.5, 7.5] and set(points[:, 1].tolist()) == {5.5}


# --- the Locator with the world's models: a part that exact mode's grid did not propose ---------------------------

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"


@pytest.fixture(scope="module")
def world_scenes(tmp_path_factory):
    from promptbox.evaluation.dataset import load_dataset
    from promptbox.world import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("world"), 5, 20261123)  # the world gate's first five scenes
    return root, load_dataset(root)


@pytest.fixture(scope="module")
def world_locator():
    from promptbox.config import LocatorConfig
    from promptbox.locator import Locator

    return Locator(LocatorConfig(sam_checkpoint=str(WEIGHTS / "mobile_sam.pt"), clip_model=str(WEIGHTS / "world-clip"),
                                 mode="exact"))


def _query(world_scenes, command: str):
    root, dataset = world_scenes
    query = next(q for q in dataset.queries if q.command == command)
    return query, np.asarray(Image.open(root / query.image).convert("RGB"))


def _box_iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def test_a_part_the_grid_missed_is_found_from_points_on_its_whole(world_locator, world_scenes, monkeypatch):
    query, image = _query(world_scenes, "pick up the handle of the spoon")
    stages: list[tuple[str, float]] = []
    answer = world_locator.locate(image, query.command, on_stage=lambda stage, p: stages.append((stage, p)))
    assert isinstance(answer, Detection), answer
    assert _box_iou(answer.box_xyxy, query.boxes[0]) >= 0.5
    # The second pass reports its own stages, and progress never goes back.
    assert [s for s, _ in stages][-2:] == ["part_matching", "part_selecting"]
    assert [p for _, p in stages] == sorted(p for _, p in stages)
    assert answer.timings_ms["part prompts"] > 0
    # The case under test: without the points on the spoon, no region inside it was proposed.
    monkeypatch.setattr(Locator, "_part_candidates", lambda *args, **kwargs: None)
    without = world_locator.locate(image, query.command)
    assert isinstance(without, NotFound) and "the 'spoon' was found" in without.reason
    assert "but no region inside it was proposed for 'handle of spoon'" in without.reason


def test_no_points_for_a_body_or_an_unnamed_whole(world_locator, world_scenes, monkeypatch):
    calls = []
    decode = world_locator.proposer.propose_points
    monkeypatch.setattr(world_locator.proposer, "propose_points", lambda *a, **k: calls.append(1) or decode(*a, **k))
    # The body is the whole minus small attachments: the whole answers it, as before.
    query, image = _query(world_scenes, "hand me the body of the bottle")
    answer = world_locator.locate(image, query.command)
    assert isinstance(answer, Detection) and _box_iou(answer.box_xyxy, query.boxes[0]) >= 0.5
    # A part of an object that is not in the frame: no whole passes min_score, so nothing is decoded for it.
    _, image = _query(world_scenes, "pick up the handle of the spoon")
    refused = world_locator.locate(image, "take the cap of the bottle")  # the scene has no bottle (its absent query)
    assert isinstance(refused, NotFound)
    assert calls == []
