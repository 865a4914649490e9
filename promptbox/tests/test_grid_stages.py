"""Exact mode's grid decoded stage by stage: the last stage is exact mode's proposals, fast mode's fallback stops at
the first stage that answers, and the frame's later goals replay the decoded stages rather than decode again. World
MobileSAM and CLIP (a network whose grid needs several stages), on a world frame where fast mode's own prompts miss."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from promptbox.detection import Detection
from promptbox.grid_stages import GridStages
from promptbox.proposals import Proposals
from promptbox.world import generate_scene

# The bench's second world frame: fast mode's prompts give no mask that reads as a mug (one lands on a mug's rim,
# its masks take in the bottle behind it); the grid's coarse stages find a mug.
SEED, INDEX, COMMAND = 20261124, 1, "please take the mug"


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SEED, INDEX, (640, 480), split="val")


def _mug_boxes(scene) -> list[np.ndarray]:
    mugs = [np.add(o.box_xyxy, [0, 0, 1, 1]) for o in scene.objects if o.cls == "mug"]
    assert len(mugs) == 2  # the case under test: two instances, for the comparing commands
    return mugs


def _same(a: Proposals, b: Proposals) -> bool:
    return (np.array_equal(a.boxes_xyxy, b.boxes_xyxy) and np.array_equal(a.predicted_iou, b.predicted_iou)
            and np.array_equal(a.masks.to_dense(), b.masks.to_dense()))


def test_the_last_stage_is_exact_modes_proposals_and_the_stages_grow(world_locator, scene):
    proposer = world_locator.proposer
    frame = proposer.embed(scene.image)
    stages = [stage() for stage in proposer.grid_stages(frame)]
    assert len(stages) >= 3  # the case under test: a grid that needs several stages
    decoded = [s.prompts_decoded for s in stages]
    assert decoded == sorted(set(decoded))  # each stage decodes new points
    assert _same(stages[-1], proposer.propose(proposer.embed(scene.image)))


def test_the_fallback_stops_at_the_first_stage_that_answers_and_a_later_goal_replays_it(world_locator, scene):
    alone = world_locator.with_mode("fast")
    alone.config = alone.config.with_overrides(fast_fallback=False)
    frame = world_locator.prepare(scene.image)
    frame.exact_proposals.clear()
    assert not isinstance(alone.locate(scene.image, COMMAND, frame=frame), Detection)  # the map's prompts miss

    names: list[str] = []
    result = world_locator.locate(scene.image, COMMAND, frame=frame, on_stage=lambda name, progress: names.append(name))
    assert isinstance(result, Detection), result.reason
    assert min(np.abs(np.subtract(result.box_xyxy, mug)).max() for mug in _mug_boxes(scene)) <= 8.0
    (stages,) = frame.exact_proposals.values()
    assert not stages.complete  # the finer stages were never decoded
    assert names.count("fallback_proposing") == stages.decoded

    # The same goal again: the same answer from the stages already decoded, with no decoding.
    calls = []
    original = world_locator.proposer._decode
    world_locator.proposer._decode = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    try:
        again = world_locator.locate(scene.image, COMMAND, frame=frame)
    finally:
        del world_locator.proposer._decode
    assert isinstance(again, Detection) and again.box_xyxy == result.box_xyxy
    assert len(calls) == 1  # fast mode's own prompts; no grid point
    assert again.timings_ms["proposals.fallback.cached"] == 0.0


def test_exact_mode_goes_on_from_the_decoded_stages_to_its_own_proposals(world_locator, scene):
    frame = world_locator.prepare(scene.image)
    frame.exact_proposals.clear()
    world_locator.locate(scene.image, COMMAND, frame=frame)  # decodes the first stages only
    (stages,) = frame.exact_proposals.values()
    assert not stages.complete
    exact = world_locator.with_mode("exact")._exact_proposals(frame)
    assert stages.complete
    proposer = world_locator.proposer
    assert _same(exact, proposer.propose(proposer.embed(scene.image)))


def test_grid_stages_decode_on_demand_and_replay_what_was_decoded():
    pulled: list[int] = []
    finished: list[int] = []

    def stages():
        for i in range(3):
            pulled.append(i)
            yield lambda i=i: finished.append(i) or _proposals(i)

    grid = GridStages(stages())
    first = next(iter(grid))
    assert pulled == [0] and finished == [0] and not grid.complete and first.timings_ms == {"stage": 0.0}
    replayed = list(grid)
    assert pulled == [0, 1, 2] and finished == [0, 1, 2] and grid.complete and grid.decoded == 3
    assert [p.timings_ms for p in replayed] == [{"cached": 0.0}, {"stage": 1.0}, {"stage": 2.0}]
    assert grid.final().timings_ms == {"cached": 0.0} and finished == [0, 1, 2]


def test_exact_mode_post_processes_only_the_last_stage():
    """Exact mode needs every stage decoded but only the last one's masks: the others are never post-processed."""
    finished: list[int] = []
    grid = GridStages(iter([lambda i=i: finished.append(i) or _proposals(i) for i in range(4)]))
    assert grid.final().timings_ms == {"stage": 3.0} and finished == [3] and grid.complete


def test_a_frame_leaving_the_cache_is_freed_at_once_and_decodes_afresh_if_used_again(world_locator, scene):
    """Partly decoded stages hold their frame in a cycle (the decoder's generator has it); the cache breaks it."""
    gc.disable()  # so only reference counting can free the frame
    try:
        world_locator.forget_frames()
        frame = world_locator.prepare(scene.image)
        world_locator.locate(scene.image, COMMAND, frame=frame)
        (stages,) = frame.exact_proposals.values()
        assert not stages.complete  # the case under test: a generator still holds the frame
        alive = weakref.ref(frame)
        world_locator.forget_frames()
        assert frame.exact_proposals == {}
        del frame, stages
        assert alive() is None
    finally:
        gc.enable()
    # A caller that kept an evicted frame gets a fresh grid: the same answer as before.
    kept = world_locator.prepare(scene.image)
    first = world_locator.locate(scene.image, COMMAND, frame=kept)
    world_locator.forget_frames()
    again = world_locator.locate(scene.image, COMMAND, frame=kept)
    assert isinstance(again, Detection) and again.box_xyxy == first.box_xyxy


@pytest.mark.parametrize("command", ["pick the mug on the left", "pick the mug next to the apple",
                                     "pick the handle of the mug"])
def test_a_command_that_compares_instances_gets_every_stage(world_locator, scene, command):
    """"The mug on the left" ranks every mug, "the handle of the mug" the regions inside the mug: fast mode's prompts
    or a stage that holds only some could pick the wrong one. So fast mode matches exact mode's masks once, with no
    fallback; a spatial word or a relation adds its map prompts' new masks to them (test_fast_comparisons.py), a
    part request nothing. On this frame the answer stays exact mode's."""
    frame = world_locator.prepare(scene.image)
    frame.exact_proposals.clear()
    world_locator.locate(scene.image, COMMAND, frame=frame)
    (stages,) = frame.exact_proposals.values()
    assert not stages.complete  # the plain command stopped early on this frame

    frame.exact_proposals.clear()
    names: list[str] = []
    calls = []
    original = world_locator.matcher.similarity_map  # fast mode's prompts come from its map
    world_locator.matcher.similarity_map = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    try:
        result = world_locator.locate(scene.image, command, frame=frame,
                                      on_stage=lambda name, progress: names.append(name))
    finally:
        del world_locator.matcher.similarity_map
    (stages,) = frame.exact_proposals.values()
    assert stages.complete and names.count("matching") == 1  # matched once, on exact mode's masks
    assert len(calls) == (0 if "handle" in command else 1)
    assert not [n for n in names if n.startswith("fallback")]
    exact = world_locator.with_mode("exact").locate(scene.image, command, frame=frame)
    assert _answer(result) == _answer(exact)


def _answer(result) -> dict:
    return {k: v for k, v in result.to_dict().items() if k != "timings_ms"}


def _proposals(i: int) -> Proposals:
    from promptbox.masks import BoxMasks

    empty = np.zeros((0,), np.float32)
    return Proposals(BoxMasks.empty((4, 4)), np.zeros((0, 4), np.float32), empty, empty, {"stage": float(i)})
