"""Fast mode's fallback: when nothing its similarity-map prompts propose passes min_score, it goes on with exact
mode's grid on the same frame. World CLIP and the world's exact masks (the oracle stands in for MobileSAM's network
only), so the case occurs: one prompt misses the object, and the grid finds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptbox.config import AmgSettings, LocatorConfig
from promptbox.detection import Detection, NotFound
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.locator import Locator
from promptbox.world import generate_scene

WORLD_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"

SEED, SCENES, SIZE = 5, 3, (320, 240)
AMG = AmgSettings(points_per_side=16)
# (scene, class) where one map prompt proposes nothing that passes and the grid finds the object.
CASES = [(1, "marker"), (2, "banana")]


@pytest.fixture(scope="module")
def oracle() -> WorldMaskProposer:
    return WorldMaskProposer(SEED, SCENES, SIZE, "val", AMG)


@pytest.fixture(scope="module")
def locators(oracle: WorldMaskProposer) -> dict[bool, Locator]:
    """fast_fallback -> a Locator with it: models load once for the module."""
    config = LocatorConfig(clip_model=str(WORLD_WEIGHTS / "world-clip"), mode="fast", fast_points=1, amg=AMG)
    return {fallback: Locator(config.with_overrides(fast_fallback=fallback), proposer=oracle)
            for fallback in (False, True)}


@pytest.mark.parametrize(("scene_index", "cls"), CASES)
def test_fast_mode_falls_back_to_the_grid_when_its_prompts_find_nothing(locators, scene_index, cls):
    scene = generate_scene(SEED, scene_index, SIZE, split="val")
    (obj,) = [o for o in scene.objects if o.cls == cls]
    command = f"take the {cls}"

    alone = locators[False].locate(scene.image, command)
    assert isinstance(alone, NotFound)  # the case under test: the map's one prompt missed
    assert not any("fallback" in name for name in alone.timings_ms)

    stages: list[tuple[str, float]] = []
    result = locators[True].locate(scene.image, command,
                                   on_stage=lambda name, progress: stages.append((name, progress)))
    assert isinstance(result, Detection), result.reason
    assert [name for name, _ in stages] == ["embedding", "proposing", "matching", "selecting", "fallback_proposing",
                                            "fallback_matching", "fallback_selecting"]
    progress = [value for _, value in stages]
    assert progress == sorted(progress)  # feedback never goes back
    # Boxes are pixel edges; the scene's are inclusive.
    np.testing.assert_allclose(result.box_xyxy, np.add(obj.box_xyxy, [0, 0, 1, 1]), atol=1.0)
    assert {"fallback proposing", "fallback matching", "fallback selecting"} <= set(result.timings_ms)
    assert result.timings_ms["total"] >= result.timings_ms["fallback proposing"]


def test_an_answer_from_the_prompts_does_not_fall_back(locators):
    scene = generate_scene(SEED, 2, SIZE, split="val")
    result = locators[True].locate(scene.image, "take the box")
    assert isinstance(result, Detection)
    assert not any("fallback" in name for name in result.timings_ms)
