"""Fast mode's map with trained weights: each patch scores the phrase against scenery, so the prompts reach objects
that raw cosine misses. World CLIP and MobileSAM on the bench's world frames (seed 20261124)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptbox.config import LocatorConfig
from promptbox.detection import Detection
from promptbox.locator import Locator
from promptbox.map_peaks import peak_points
from promptbox.world import generate_scene

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"
SEED = 20261124


@pytest.fixture(scope="module")
def locator() -> Locator:
    return Locator(LocatorConfig(sam_checkpoint=str(WEIGHTS / "mobile_sam.pt"), clip_model=str(WEIGHTS / "world-clip"),
                                 mode="fast", fast_fallback=False))


def _prompts_on(locator: Locator, scene, name: str, **scenery) -> int:
    boxes = [o.box_xyxy for o in scene.objects if o.cls == name]
    assert boxes  # the case under test: the object is in the frame
    heat = locator.matcher.similarity_map(scene.image, locator.matcher.encode_text(name), **scenery)
    points = peak_points(heat, scene.image.shape[:2], locator.config.fast_points)
    return sum(any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes) for x, y in points)


@pytest.mark.parametrize(("index", "name"), [(0, "apple"), (2, "spoon")])
def test_scenery_relative_peaks_reach_objects_raw_cosine_misses(locator: Locator, index: int, name: str) -> None:
    scene = generate_scene(SEED, index, (640, 480), split="val")
    assert _prompts_on(locator, scene, name) == 0  # raw cosine: every peak on the cloth, the table or a neighbour
    assert _prompts_on(locator, scene, name, scenery=locator._background) >= 1


def test_fast_modes_own_prompts_find_the_apple(locator: Locator) -> None:
    """With no fallback, so the answer is the map's prompts' (raw cosine's prompts found nothing here)."""
    scene = generate_scene(SEED, 0, (640, 480), split="val")
    result = locator.locate(scene.image, "pick the apple")
    assert isinstance(result, Detection), result.reason
    (apple,) = [o for o in scene.objects if o.cls == "apple"]
    np.testing.assert_allclose(result.box_xyxy, np.add(apple.box_xyxy, [0, 0, 1, 1]), atol=8.0)
    assert "fallback proposing" not in result.timings_ms
