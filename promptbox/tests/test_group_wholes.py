"""A region of an object and the objects touching it is not the object's whole: the world CLIP and the world's exact
masks (the oracle gives SAM's three levels at a point: part, object, and the group of touching objects), on the
validation scenes where whole-over-parts took such a group for the screwdriver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptbox.config import LocatorConfig
from promptbox.detection import Detection
from promptbox.evaluation.metrics import box_iou
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.locator import Locator
from promptbox.world import generate_scene

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"
VAL_SEED = 20261123  # the world gate's validation stream
CASES = [("fast", 8, "please take the screwdriver"), ("exact", 5, "pick the screwdriver")]


@pytest.fixture(scope="module")
def locator() -> Locator:
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"))
    return Locator(config, proposer=WorldMaskProposer(VAL_SEED, 9, (640, 480), settings=config.amg))


def _on_a_screwdriver(result, scene) -> bool:
    boxes = [np.add(o.box_xyxy, [0, 0, 1, 1]) for o in scene.objects if o.cls == "screwdriver"]
    assert boxes
    return isinstance(result, Detection) and max(box_iou(result.box_xyxy, b) for b in boxes) >= 0.5


@pytest.mark.parametrize(("mode", "index", "command"), CASES)
def test_the_screwdriver_not_the_screwdriver_and_its_neighbours(locator, monkeypatch, mode, index, command):
    scene = generate_scene(VAL_SEED, index, (640, 480), split="val")
    located = locator.with_mode(mode)
    result = located.locate(scene.image, command)
    assert _on_a_screwdriver(result, scene), result.to_dict()

    # The case under test: without the check, the group is the answer.
    monkeypatch.setattr(Locator, "_adds_another_object", lambda self, *args: False)
    located.forget_frames()
    group = located.locate(scene.image, command)
    assert isinstance(group, Detection) and not _on_a_screwdriver(group, scene)
    (whole,) = [o for o in scene.objects
                if o.cls == "screwdriver" and box_iou(result.box_xyxy, np.add(o.box_xyxy, [0, 0, 1, 1])) >= 0.5]
    x0, y0, x1, y1 = group.box_xyxy
    assert x0 <= whole.box_xyxy[0] and y0 <= whole.box_xyxy[1] and x1 >= whole.box_xyxy[2] and y1 >= whole.box_xyxy[3]
