"""Fast mode's window map (`fast_map: windows`, and `both` with the patch-token map, auto's choice on a GPU): the
windows' geometry, their heat against scenery, and, with the world weights on the bench's mug frame (seed 20261124,
scene 1), prompts that reach a mug where the patch-token map's do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from promptbox.config import LocatorConfig, fast_map_on
from promptbox.detection import Detection, NotFound
from promptbox.locator import Locator
from promptbox.map_peaks import peak_cells
from promptbox.window_map import WindowEmbeddings, window_grid, window_heat
from promptbox.world import generate_scene

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"
SEED = 20261124


def test_windows_cover_the_frame_half_a_window_apart() -> None:
    grid = window_grid((480, 640), 0.2, context_pad=0.1)
    assert grid.side == pytest.approx(128.0)
    assert grid.shape == (7, 9)
    xs, ys = grid.centres[0, :, 0], grid.centres[:, 0, 1]
    assert xs[0] == pytest.approx(64) and xs[-1] == pytest.approx(576)  # the first and last touch the edges
    assert ys[0] == pytest.approx(64) and ys[-1] == pytest.approx(416)
    assert np.diff(xs).max() <= 64 + 1e-3 and np.diff(ys).max() <= 64 + 1e-3
    # The matcher adds context_pad on each side of a box: the crops are the windows.
    widths = grid.boxes[:, 2] - grid.boxes[:, 0]
    np.testing.assert_allclose(widths * (1 + 2 * 0.1), 128.0, rtol=1e-5)
    np.testing.assert_allclose((grid.boxes[:, :2] + grid.boxes[:, 2:]) / 2, grid.centres.reshape(-1, 2), atol=1e-3)


def test_a_window_never_outgrows_the_frame() -> None:
    grid = window_grid((50, 100), 1.0, context_pad=0.0)
    assert grid.side == pytest.approx(50.0)  # the short side, not the long one
    assert grid.shape[0] == 1 and grid.centres[0, 0, 1] == pytest.approx(25.0)
    assert grid.centres[0, -1, 0] == pytest.approx(75.0)


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_window_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match=rf"map_window={share!r} is out of range; accepted: above 0 and at most 1"):
        window_grid((480, 640), share, context_pad=0.1)
    with pytest.raises(ValueError, match="map_window"):
        LocatorConfig(map_window=share)


def test_an_unknown_map_is_refused() -> None:
    with pytest.raises(ValueError, match="fast_map='grid' is not supported; accepted: auto, tokens, windows, both"):
        LocatorConfig(fast_map="grid")


@pytest.mark.parametrize(("fast_map", "device", "used", "maps"), [
    ("auto", "cpu", "tokens", ("tokens",)), ("auto", "cuda", "both", ("tokens", "windows")),
    ("auto", "cuda:1", "both", ("tokens", "windows")), ("windows", "cpu", "windows", ("windows",)),
    ("tokens", "cuda", "tokens", ("tokens",)), ("both", "cpu", "both", ("tokens", "windows")),
])
def test_auto_is_both_maps_on_a_gpu_and_the_token_map_on_a_cpu(fast_map: str, device: str, used: str,
                                                               maps: tuple[str, ...]) -> None:
    assert fast_map_on(fast_map, device) == used
    assert LocatorConfig(fast_map=fast_map, device=device).resolved_fast_map == used
    assert LocatorConfig(fast_map=fast_map, device=device).fast_maps == maps
    assert LocatorConfig().fast_map == "auto"


def test_the_heat_is_the_phrase_over_scenery_and_peaks_at_its_window() -> None:
    grid = window_grid((480, 640), 0.2, context_pad=0.1)
    n = grid.shape[0] * grid.shape[1]
    text, table = F.normalize(torch.tensor([1.0, 0, 0]), dim=0), torch.tensor([[0.0, 1.0, 0]])
    vectors = torch.tensor([[0.0, 0.0, 1.0]]).repeat(n, 1)  # neither the phrase nor the table
    hot = 3 * grid.shape[1] + 5
    vectors[hot] = F.normalize(torch.tensor([1.0, 0.2, 0]), dim=0)
    vectors[0] = F.normalize(torch.tensor([1.0, 1.0, 0]), dim=0)  # as like the phrase as the table: scenery
    heat = window_heat(WindowEmbeddings(grid, vectors), text, table)
    assert heat.shape == grid.shape
    assert heat[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert np.unravel_index(np.argmax(heat), heat.shape) == (3, 5)
    np.testing.assert_allclose(grid.points(peak_cells(heat, 1)), grid.centres[3:4, 5], atol=1e-4)
    with pytest.raises(ValueError, match=r"scenery: shape \(3,\); accepted: \(B, 3\), B >= 1"):
        window_heat(WindowEmbeddings(grid, vectors), text, torch.zeros(3))


@pytest.fixture(scope="module")
def world_locators() -> dict[str, Locator]:
    """Fast mode without the fallback, so an answer is the map's prompts' own; one per map."""
    base = LocatorConfig(sam_checkpoint=str(WEIGHTS / "mobile_sam.pt"), clip_model=str(WEIGHTS / "world-clip"),
                         mode="fast", fast_fallback=False)
    return {name: Locator(base.with_overrides(fast_map=name)) for name in ("tokens", "windows", "both", "auto")}


def test_the_window_map_prompts_a_mug_the_token_map_misses(world_locators: dict[str, Locator]) -> None:
    scene = generate_scene(SEED, 1, (640, 480), split="val")
    mugs = [o.box_xyxy for o in scene.objects if o.cls == "mug"]
    assert mugs  # the case under test
    by_tokens = world_locators["tokens"].locate(scene.image, "please take the mug")
    assert isinstance(by_tokens, NotFound)  # the patch-token map's prompts miss both mugs here
    windows = world_locators["windows"]
    windows.warm_up()
    by_windows = windows.locate(scene.image, "please take the mug")
    assert isinstance(by_windows, Detection), by_windows.reason
    assert "fallback proposing" not in by_windows.timings_ms
    x0, y0, x1, y1 = by_windows.box_xyxy
    assert any(abs(x0 - a) <= 8 and abs(y0 - b) <= 8 and abs(x1 - 1 - c) <= 8 and abs(y1 - 1 - d) <= 8
               for a, b, c, d in mugs)


def test_a_prepared_frame_keeps_its_windows(world_locators: dict[str, Locator]) -> None:
    windows = world_locators["windows"]
    scene = generate_scene(SEED, 0, (640, 480), split="val")
    frame = windows.prepare(scene.image)
    assert isinstance(frame.windows, WindowEmbeddings) and "windows" in frame.timings_ms
    kept = frame.windows
    windows.locate(scene.image, "pick the apple", frame=frame)
    windows.locate(scene.image, "take the spoon", frame=frame)
    assert frame.windows is kept  # every phrase on the frame reuses them
    assert world_locators["tokens"].prepare(scene.image).windows is None  # the token map computes none


def test_with_windows_and_crops_no_patch_tokens_are_computed(world_locators: dict[str, Locator]) -> None:
    """Patch tokens serve the token map and the matching shortlist; with neither, preparing a frame skips them."""
    config = world_locators["windows"].config.with_overrides(matching="crops")
    locator = Locator(config)
    scene = generate_scene(SEED, 2, (640, 480), split="val")
    frame = locator.prepare(scene.image)
    assert frame.patch_tokens is None and "patch_tokens" not in frame.timings_ms
    assert frame.windows is not None
    assert world_locators["windows"].prepare(scene.image).patch_tokens is not None  # the shortlist's


def test_both_maps_prompt_at_each_maps_peaks(world_locators: dict[str, Locator],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`both` decodes the token map's fast_points peaks and the windows' (in that order), so it keeps the token
    map's prompts and adds the windows' mug."""
    scene = generate_scene(SEED, 1, (640, 480), split="val")
    prompted: dict[str, np.ndarray] = {}
    answers = {}
    for name in ("tokens", "windows", "both"):
        locator = world_locators[name]
        original = locator.proposer.propose_points

        def spy(frame, points, name=name, original=original):
            prompted[name] = points
            return original(frame, points)

        monkeypatch.setattr(locator.proposer, "propose_points", spy)
        answers[name] = locator.locate(scene.image, "please take the mug")
    k = world_locators["both"].config.fast_points
    assert prompted["tokens"].shape == prompted["windows"].shape == (k, 2)
    np.testing.assert_array_equal(prompted["both"], np.concatenate([prompted["tokens"], prompted["windows"]]))
    assert isinstance(answers["tokens"], NotFound)  # the case: only the windows' prompts reach a mug
    assert isinstance(answers["both"], Detection), answers["both"].reason
    assert answers["both"].box_xyxy == answers["windows"].box_xyxy
    frame = world_locators["both"].prepare(scene.image)
    assert frame.windows is not None and frame.patch_tokens is not None


def test_auto_on_a_cpu_is_the_token_map(world_locators: dict[str, Locator]) -> None:
    auto = world_locators["auto"]
    assert auto.config.device == "cpu" and "(tokens map)" in auto.describe()
    scene = generate_scene(SEED, 1, (640, 480), split="val")
    assert auto.prepare(scene.image).windows is None  # a real CLIP's windows would cost seconds here
    assert isinstance(auto.locate(scene.image, "please take the mug"), NotFound)  # as the token map: no fallback
