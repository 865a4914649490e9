"""Locator end to end on the real architectures with random-init checkpoints loaded through the real loaders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from promptbox.config import AmgSettings, LocatorConfig
from promptbox.detection import Detection, NotFound
from promptbox.locator import Locator

# Random weights predict low IoUs, so AMG's seed thresholds would drop every mask; zero keeps the plumbing busy.
# Every grid point decoded (no coarse-to-fine skipping), so exact mode's masks are the seed configuration's.
PERMISSIVE = AmgSettings(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=0,
                         skip_covered_points=False)


@pytest.fixture(scope="session")
def locator(sam_checkpoint, clip_dir) -> Locator:
    config = LocatorConfig(sam_checkpoint=str(sam_checkpoint), clip_model=str(clip_dir), amg=PERMISSIVE, min_score=0.0)
    return Locator(config)


@pytest.fixture(scope="session")
def frame() -> np.ndarray:
    rng = np.random.default_rng(7)
    image = np.full((120, 160, 3), 200, np.uint8)
    image[30:90, 20:70] = (200, 30, 30)  # a red block
    image[50:100, 100:150] = (30, 30, 200)  # a blue block
    return image + rng.integers(0, 10, image.shape, dtype=np.uint8)


def test_locate_returns_a_box_inside_the_frame(locator, frame):
    result = locator.locate(frame, "take the red block")
    assert isinstance(result, Detection)
    assert result.phrase == "red block"
    x0, y0, x1, y1 = result.box_xyxy
    assert 0 <= x0 <= x1 <= frame.shape[1] and 0 <= y0 <= y1 <= frame.shape[0]
    assert result.mask.shape == frame.shape[:2] and result.mask.dtype == bool
    assert 0.0 <= result.score <= 1.0
    assert {"text", "embedding", "proposing", "matching", "selecting", "total"} <= set(result.timings_ms)
    # Checkpoint files in the upstream formats are "real" weights to the loader: nothing is flagged.
    assert result.random_weights is False
    assert "RANDOM" not in locator.describe()


def test_stages_are_reported_in_order_with_rising_progress(locator, frame):
    seen: list[tuple[str, float]] = []
    locator.locate(frame, "pick the blue block", on_stage=lambda stage, progress: seen.append((stage, progress)))
    assert [s for s, _ in seen] == ["embedding", "proposing", "matching", "selecting"]
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[0] >= 0.0 and progress[-1] < 1.0


class _Cancelled(Exception):
    pass


def test_an_exception_from_on_stage_stops_the_run_between_stages(locator, frame):
    seen: list[str] = []

    def on_stage(stage: str, progress: float) -> None:
        seen.append(stage)
        if stage == "matching":
            raise _Cancelled

    with pytest.raises(_Cancelled):
        locator.locate(frame, "take the red block", on_stage=on_stage)
    assert seen == ["embedding", "proposing", "matching"]
    # The locator is still usable afterwards.
    assert isinstance(locator.locate(frame, "take the red block"), Detection)


def test_a_prepared_frame_skips_the_encoder(locator, frame, monkeypatch):
    other = frame.copy()
    other[0, 0] = (1, 2, 3)  # new content, so the cache cannot already hold it
    prepared = locator.prepare(other)
    assert locator.prepare(other.copy()) is prepared  # same content, new array: computed once

    calls = []
    original = locator.proposer.embed
    monkeypatch.setattr(locator.proposer, "embed", lambda image: calls.append(1) or original(image))
    result = locator.locate(other, "take the blue block")
    result_explicit = locator.locate(other, "take the blue block", frame=prepared)
    assert calls == []
    assert result.box_xyxy == result_explicit.box_xyxy


def test_a_frame_of_another_size_is_refused(locator, frame):
    prepared = locator.prepare(frame)
    with pytest.raises(ValueError, match=r"frame: the prepared embedding is for a \(120, 160\) image"):
        locator.locate(np.zeros((60, 80, 3), np.uint8), "take the block", frame=prepared)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((120, 160), np.uint8), r"image: shape \(120, 160\) is not supported; accepted: \(height, width, 3\)"),
        (np.zeros((120, 160, 4), np.uint8), r"image: shape \(120, 160, 4\)"),
        (np.zeros((120, 160, 3), np.float32), r"image: dtype float32 is not supported; accepted: uint8 RGB"),
        (np.zeros((4, 160, 3), np.uint8), r"image: 160x4 is too small; accepted: at least 8x8"),
        ([[0, 0, 0]], r"image: expected a numpy array, got list"),
    ],
)
def test_bad_images_are_refused_with_the_field_and_what_is_accepted(locator, image, message):
    with pytest.raises(ValueError, match=message):
        locator.locate(image, "take the block")


def test_a_bad_command_changes_nothing(locator, frame):
    before = list(locator._frames)
    with pytest.raises(ValueError, match="command"):
        locator.locate(frame, "please")
    assert list(locator._frames) == before


def test_min_score_above_every_candidate_gives_not_found_with_the_best(locator, frame):
    result = locator.locate(frame, "take the red block", min_score=1.0)
    assert isinstance(result, NotFound)
    assert result.best is not None and result.best.score < 1.0
    assert "min_score" in result.reason
    with pytest.raises(ValueError, match=r"min_score=1.5 is out of range"):
        locator.locate(frame, "take the red block", min_score=1.5)


def test_exact_mode_chooses_the_box_the_seed_configuration_chooses(locator, frame):
    upstream = Locator.__new__(Locator)
    upstream.__dict__.update(locator.__dict__)
    upstream.config = locator.config.with_overrides(mode="upstream")
    exact = locator.locate(frame, "take the blue block")
    seed = upstream.locate(frame, "take the blue block")
    np.testing.assert_allclose(exact.box_xyxy, seed.box_xyxy, atol=1.0)
    assert exact.score == pytest.approx(seed.score, abs=1e-3)


def test_fast_mode_answers_with_few_prompts(locator, frame):
    fast = Locator.__new__(Locator)
    fast.__dict__.update(locator.__dict__)
    fast.config = locator.config.with_overrides(mode="fast", fast_points=3)
    result = fast.locate(frame, "take the red block")
    assert isinstance(result, Detection)
    x0, y0, x1, y1 = result.box_xyxy
    assert 0 <= x0 <= x1 <= frame.shape[1] and 0 <= y0 <= y1 <= frame.shape[0]
    # Three point prompts with three masks each, before de-duplication.
    assert 1 + len(result.alternatives) <= 9


def test_forget_frames_makes_the_next_call_embed_again(locator, frame, monkeypatch):
    locator.prepare(frame)
    calls = []
    original = locator.proposer.embed
    monkeypatch.setattr(locator.proposer, "embed", lambda image: calls.append(1) or original(image))
    locator.prepare(frame)
    assert calls == []
    locator.forget_frames()
    locator.prepare(frame)
    assert calls == [1]


def test_a_phrases_competing_names_are_found_once(locator, frame, monkeypatch):
    """They depend on the phrase and the model alone; a later goal with the phrase reuses them, and gets the same
    answer."""
    from promptbox import vocabulary

    calls = []
    original = vocabulary.competitors
    monkeypatch.setattr(vocabulary, "competitors",
                        lambda phrase, *rest: calls.append(phrase) or original(phrase, *rest))
    monkeypatch.setattr(locator, "_competitors", type(locator._competitors)())  # none found yet
    first = locator.locate(frame, "take the blue block")
    assert calls.count("blue block") == 0 and calls.count("block") == 1  # a colour phrase asks about its thing
    again = locator.locate(frame, "take the blue block")
    assert calls.count("block") == 1
    assert again.to_dict()["box_xyxy"] == first.to_dict()["box_xyxy"]
    locator.locate(frame, "take the red block")
    assert calls.count("block") == 1 and len(calls) == 1


def test_boxes_are_pixel_edges_matching_the_mask(locator, frame):
    result = locator.locate(frame, "take the red block")
    rows, cols = result.mask.any(axis=1).nonzero()[0], result.mask.any(axis=0).nonzero()[0]
    # x1/y1 are one past the last mask pixel, so the box's width counts the mask's columns.
    assert result.box_xyxy == (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def test_exact_proposals_are_computed_once_per_frame(locator, monkeypatch):
    """Exact-mode masks don't depend on the command: a second command on the same frame reuses them."""
    frame_image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    calls = []
    real = locator.proposer.grid_stages
    monkeypatch.setattr(locator.proposer, "grid_stages", lambda frame: calls.append(1) or real(frame))
    first = locator.locate(frame_image, "take the mug")
    second = locator.locate(frame_image, "take the cup")
    assert len(calls) == 1
    assert second.timings_ms.get("proposals.cached") == 0.0
    assert first.timings_ms.get("proposals.cached") is None


def _arrays(obj, seen: set[int]):
    """Every numpy array reachable from `obj` through dataclass fields, attributes, slots and containers."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
        return
    if dataclasses.is_dataclass(obj):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    else:
        children = [getattr(obj, name) for name in getattr(type(obj), "__slots__", ())]
        children += list(getattr(obj, "__dict__", {}).values())
    for child in children:
        yield from _arrays(child, seen)


def test_cached_exact_proposals_hold_no_full_frame_mask_stack(locator):
    """The frame cache keeps each frame's exact-mode proposals (every grid stage's): their masks are cropped and
    packed, not (N, H, W)."""
    image = np.random.default_rng(4).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    locator.locate(image, "take the mug")
    (stages,) = locator.prepare(image).exact_proposals.values()
    assert stages.complete
    kept = list(stages)
    assert len(kept[-1]) > 0
    held = list(_arrays(stages, set()))
    assert held and not [a.shape for a in held if a.ndim >= 3 or a.size >= 72 * 96]  # no stack, no frame
    dense_bytes = sum(len(p) for p in kept) * 72 * 96  # what (N, H, W) bool stacks would hold
    assert sum(a.nbytes for a in held) < dense_bytes
    final = kept[-1]
    np.testing.assert_array_equal(final.masks.inclusive_boxes(), final.boxes_xyxy)  # the crops are the boxes'


def test_what_parsing_set_aside_or_corrected_reaches_the_answer(locator, frame):
    corrected = locator.locate(frame, "take the scisors")  # min_score 0 here: every frame has an answer
    assert corrected.phrase == "scissors"
    assert "'scisors' read as 'scissors'" in corrected.notes
    destination = locator.locate(frame, "put the apple in the bowl")
    assert destination.phrase == "apple"
    assert any("'in the bowl' is where to put it" in note for note in destination.notes)
    strict = locator.locate(frame, "put the apple in the bowl", min_score=1.0)
    assert not strict.found and "'in the bowl' is where to put it" in strict.reason


@pytest.mark.parametrize(("mode", "matching", "patch_pass"),
                         [("fast", "crops", True), ("exact", "shortlist", True), ("exact", "crops", False)])
def test_warm_up_runs_every_stage_the_mode_uses(locator, monkeypatch, mode, matching, patch_pass):
    warm = Locator.__new__(Locator)
    warm.__dict__.update(locator.__dict__)
    warm.config = locator.config.with_overrides(mode=mode, matching=matching)
    calls: list[str] = []
    for owner, name in ((warm.proposer, "embed"), (warm.proposer, "propose_points"), (warm.matcher, "encode_texts"),
                        (warm.matcher, "patch_tokens"), (warm.matcher, "encode_regions")):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, _o=original, _n=name, **k: (calls.append(_n), _o(*a, **k))[1])
    grids = []
    monkeypatch.setattr(warm.proposer, "_encode", lambda pixels, grid, _o=warm.proposer._encode: (
        grids.append(grid), _o(pixels, grid))[1])
    warm.warm_up()
    assert {"embed", "propose_points", "encode_texts", "encode_regions"} <= set(calls)
    assert ("patch_tokens" in calls) == patch_pass
    assert grids == [(48, 64)]  # a 640x480 camera's grid, so an ONNX backend exports the graph goals will use
