"""The class question is also asked colour-blind (colour_blind.py): hand-made scores for how the readings combine,
the world CLIP (the real architecture) for the turned crops, and world scenes with the world's exact masks (and
world MobileSAM's, for one case) for what it finds and what it still refuses: colour phrases, then phrases without a
colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptbox import attributes, colour_blind
from promptbox.config import LocatorConfig
from promptbox.detection import Detection, NotFound
from promptbox.evaluation.metrics import box_iou
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.locator import Locator
from promptbox.masks import BoxMasks
from promptbox.selection import PhraseScores, calibrate
from promptbox.shortlist import pooled_embeddings
from promptbox.world import generate_scene
from promptbox.world.catalogue import UNSEEN_PAIRS

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"
VAL_SEED = 20261123  # the world gate's validation stream
SIZE = (640, 480)


def _scores(confidence, top1, rival) -> PhraseScores:
    confidence = np.asarray(confidence, float)
    return PhraseScores("mug", np.linspace(0.2, 0.3, len(confidence)), confidence, np.asarray(top1, bool),
                        tuple(rival))


def test_each_region_keeps_its_more_confident_reading() -> None:
    plain = _scores([0.02, 0.9, 0.4], [False, True, False], ["apple", "bowl", "ball"])
    # Colour-blind readings of regions 0 and 1 only (the regions whose colour the colour question names).
    blind = _scores([0.85, 0.3], [True, False], ["cup", "vase"])
    both = colour_blind.either(plain, blind, np.array([0, 1]))
    assert both.confidence.tolist() == [0.85, 0.9, 0.4]
    assert both.top1.tolist() == [True, True, False]
    # What a region reads as comes from the reading it keeps: region 0 is no longer "apple".
    assert both.rival == ("cup", "bowl", "ball")
    assert np.array_equal(both.similarity, plain.similarity)  # nested regions compare raw cosines read alike
    assert plain.confidence.tolist() == [0.02, 0.9, 0.4]  # the plain scores are not changed in place


def test_a_reading_of_other_regions_is_refused() -> None:
    plain = _scores([0.1, 0.2], [False, False], ["apple", "ball"])
    with pytest.raises(ValueError, match="blind scores 1 regions for 2 rows"):
        colour_blind.either(plain, _scores([0.9], [True], ["cup"]), np.array([0, 1]))


@pytest.fixture(scope="module")
def locator() -> Locator:
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), mode="exact")
    return Locator(config, proposer=WorldMaskProposer(VAL_SEED, 3, SIZE, settings=config.amg))


def _regions(locator: Locator, scene):
    proposals = locator._exact_proposals(locator.prepare(scene.image))
    return proposals, locator.matcher.encode_regions(scene.image, proposals.boxes_xyxy, proposals.masks)


def test_a_turned_crop_is_the_crop_of_the_frame_with_its_channels_turned(locator: Locator) -> None:
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    proposals, plain = _regions(locator, scene)
    boxes, masks = proposals.boxes_xyxy, proposals.masks
    matcher = locator.matcher
    turned = matcher.encode_regions(scene.image, boxes, masks, turn=1)
    # R, G, B -> B, R, G, turned before CLIP's per-channel normalisation (after it, the channels' means would mix).
    rolled = matcher.encode_regions(np.ascontiguousarray(np.roll(scene.image, 1, axis=2)), boxes, masks)
    assert torch.allclose(turned, rolled, atol=1e-5)
    assert (plain * turned).sum(dim=1).min() < 0.99  # the case under test: a coloured scene reads differently
    assert torch.allclose(matcher.encode_regions(scene.image, boxes, masks, turn=3), plain, atol=1e-5)

    blind = colour_blind.ColourBlindRegions(matcher, scene.image, boxes, masks, plain).embeddings(
        np.arange(len(boxes)))
    mean = plain + turned + matcher.encode_regions(scene.image, boxes, masks, turn=2)
    assert torch.allclose(blind, mean / mean.norm(dim=1, keepdim=True), atol=1e-5)


def test_both_turns_of_a_few_regions_take_one_call_of_the_image_tower(locator: Locator, monkeypatch) -> None:
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    proposals, _ = _regions(locator, scene)
    matcher = locator.matcher
    rows = np.arange(3)
    boxes, masks = proposals.boxes_xyxy[rows], proposals.masks[rows]
    apart = [matcher.encode_regions(scene.image, boxes, masks, turn=t) for t in (1, 2)]
    calls: list[int] = []
    features = matcher._image_features
    monkeypatch.setattr(matcher, "_image_features", lambda pixels: (calls.append(len(pixels)), features(pixels))[1])
    together = matcher.encode_turned(scene.image, boxes, masks, (1, 2))
    assert calls == [6]
    for one, other in zip(together, apart, strict=True):
        assert torch.allclose(one, other, atol=1e-5)
    # More crops than a batch: calls of at most batch_size, in order.
    monkeypatch.setattr(matcher, "batch_size", 4)
    calls.clear()
    split = matcher.encode_turned(scene.image, boxes, masks, (1, 2))
    assert calls == [3, 3]
    for one, other in zip(split, apart, strict=True):
        assert torch.allclose(one, other, atol=1e-5)
    with pytest.raises(ValueError, match="turns: empty"):
        matcher.encode_turned(scene.image, boxes, masks, ())


def test_each_regions_colour_blind_embedding_is_computed_once(locator: Locator, monkeypatch) -> None:
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    proposals, plain = _regions(locator, scene)
    cropped: list[tuple[int, tuple[int, ...]]] = []
    encode = locator.matcher.encode_turned
    monkeypatch.setattr(locator.matcher, "encode_turned", lambda image, boxes, masks, turns: (
        cropped.append((len(boxes), turns)), encode(image, boxes, masks, turns))[1])
    regions = colour_blind.ColourBlindRegions(locator.matcher, scene.image, proposals.boxes_xyxy, proposals.masks,
                                              plain)
    first = regions.embeddings(np.array([2, 0]))
    again = regions.embeddings(np.array([0, 1, 2]))  # the target's rows, then a relation's anchor's
    assert cropped == [(2, (1, 2)), (1, (1, 2))]  # rows 0 and 2 in both turns, then row 1 alone
    assert torch.equal(again[0], first[1]) and torch.equal(again[2], first[0])


def _truth(scene, colour: str, cls: str) -> np.ndarray:
    boxes = [np.add(o.box_xyxy, [0, 0, 1, 1]) for o in scene.objects if (o.colour, o.cls) == (colour, cls)]
    assert len(boxes) == 1, f"the scene holds {len(boxes)} {colour} {cls}s: it no longer shows the case"
    return boxes[0]


def test_a_mug_in_a_colour_never_seen_on_mugs_is_found_among_other_green_objects(locator: Locator) -> None:
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    assert ("green", "mug") in UNSEEN_PAIRS
    truth = _truth(scene, "green", "mug")
    assert sum(o.colour == "green" for o in scene.objects) >= 3  # a screwdriver, a bottle and a phone are green too
    result = locator.locate(scene.image, "pick the green mug")
    assert isinstance(result, Detection), result.to_dict()
    assert box_iou(result.box_xyxy, truth) >= 0.5

    # The case under test: read in its own colours, the mug is not a mug to the world CLIP.
    proposals, regions = _regions(locator, scene)
    mug = int(np.argmax([box_iou(b + np.array([0, 0, 1, 1]), truth) for b in proposals.boxes_xyxy]))
    plain = locator._score(regions, "green mug")
    assert plain.confidence[mug] < locator.config.min_score and plain.rival[mug] != "mug", plain.rival[mug]


def test_a_green_object_of_another_class_is_still_not_the_green_mug(locator: Locator) -> None:
    scene = generate_scene(VAL_SEED, 2, SIZE, split="val")
    phone = _truth(scene, "green", "phone")
    assert not [o for o in scene.objects if o.cls == "mug"]
    result = locator.locate(scene.image, "pick the green mug")
    assert isinstance(result, NotFound), result.to_dict()

    # The case under test: the phone's colour is the asked one, so its class was asked colour-blind too.
    proposals, regions = _regions(locator, scene)
    row = int(np.argmax([box_iou(b + np.array([0, 0, 1, 1]), phone) for b in proposals.boxes_xyxy]))
    _, similarity = locator._colour_similarity(regions, attributes.colour_phrase("green mug"))
    assert attributes.colour_wins(similarity[:, 0], similarity[:, 1:])[row]


def test_a_mug_of_another_colour_is_not_read_colour_blind(locator: Locator) -> None:
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    assert not [o for o in scene.objects if (o.colour, o.cls) == ("red", "mug")]
    assert isinstance(locator.locate(scene.image, "take the red mug"), NotFound)


def test_the_regions_best_in_colour_get_crops_whatever_their_class_reads_as_on_pooled_tokens() -> None:
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), mode="exact", shortlist_size=5)
    locator = Locator(config, proposer=WorldMaskProposer(VAL_SEED, 1, SIZE, settings=config.amg))
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    truth = _truth(scene, "green", "mug")
    result = locator.locate(scene.image, "pick the green mug")
    assert isinstance(result, Detection) and box_iou(result.box_xyxy, truth) >= 0.5, result.to_dict()

    # The case under test: ranked by the phrase's score on pooled tokens, the mug is not among the 5 best.
    frame = locator.prepare(scene.image)
    proposals = locator._exact_proposals(frame)
    mug = int(np.argmax([box_iou(b + np.array([0, 0, 1, 1]), truth) for b in proposals.boxes_xyxy]))
    pooled = pooled_embeddings(locator._tokens(scene.image, frame), proposals.masks)
    ranked = np.argsort(-locator._score(pooled, "green mug").confidence, kind="stable")
    assert mug not in ranked[:5].tolist()
    _, similarity = locator._colour_similarity(pooled, attributes.colour_phrase("green mug"))
    by_colour = np.argsort(-calibrate(similarity[:, 0], similarity[:, 1:], locator.matcher.logit_scale))
    assert mug in by_colour[:5].tolist()


def test_only_the_regions_whose_colour_is_asked_are_read_colour_blind(locator: Locator, monkeypatch) -> None:
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    crops: dict[tuple[int, ...], list[int]] = {(0,): [], colour_blind.TURNS: []}  # per turns, each call's regions
    encode = locator.matcher.encode_turned
    monkeypatch.setattr(locator.matcher, "encode_turned", lambda image, boxes, masks, turns: (
        crops[turns].append(len(boxes)), encode(image, boxes, masks, turns))[1])
    assert isinstance(locator.locate(scene.image, "pick the green mug"), Detection)
    # Turned: the green regions (this scene has four green objects), not all that were matched.
    assert 0 < sum(crops[colour_blind.TURNS]) < max(crops[(0,)]), crops
    crops[colour_blind.TURNS].clear()
    assert isinstance(locator.locate(scene.image, "pick the black pen"), Detection)
    assert crops[colour_blind.TURNS], "a seen pair is read colour-blind as well: its regions of the asked colour"


def test_in_each_hue_keeps_the_least_confident_turned_reading() -> None:
    first = _scores([0.9, 0.8, 0.1], [True, True, False], ["cup", "bowl", "ball"])
    second = _scores([0.7, 0.95, 0.6], [True, False, True], ["vase", "jar", "box"])
    both = colour_blind.in_each_hue([first, second])
    assert both.confidence.tolist() == [0.7, 0.8, 0.1]
    assert both.top1.tolist() == [True, False, False]  # the class must be top-1 in every hue
    assert both.rival == ("vase", "bowl", "ball")  # what the weakest reading reads the region as
    with pytest.raises(ValueError, match="no turned readings"):
        colour_blind.in_each_hue([])


def test_grey_white_and_black_regions_have_no_hue_to_turn(locator: Locator) -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:] = (238, 238, 234)  # the world's white
    image[10:30, 30:50] = (35, 160, 60)  # the world's green
    image[0:5, 0:5] = (28, 28, 30)  # and its black
    dense = np.zeros((3, 40, 60), bool)
    dense[0, 5:35, 5:25] = True  # white only
    dense[1, 10:30, 30:50] = True  # green only
    dense[2, 0:5, 0:5] = True  # black only
    masks = BoxMasks.from_dense(dense)
    chroma = colour_blind.chroma(image, masks, np.array([0, 1, 2]))
    assert chroma == pytest.approx([4 / 255, 125 / 255, 2 / 255])
    regions = colour_blind.ColourBlindRegions(locator.matcher, image, masks.inclusive_boxes().astype(np.float32),
                                              masks, torch.zeros(3, 8))
    assert regions.chromatic(np.array([2, 1, 0])).tolist() == [1]


def _scene_locator(seed: int, scenes: int, **config) -> Locator:
    settings = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), mode="exact", **config)
    return Locator(settings, proposer=WorldMaskProposer(seed, scenes, SIZE, settings=settings.amg))


def test_a_parts_whole_in_a_colour_never_seen_on_its_class_is_found(locator: Locator) -> None:
    scene = generate_scene(VAL_SEED, 0, SIZE, split="val")
    mug = next(o for o in scene.objects if (o.colour, o.cls) == ("green", "mug"))
    body = np.add(next(p.box_xyxy for p in mug.parts if p.name == "body"), [0, 0, 1, 1])
    result = locator.locate(scene.image, "grab the body of the mug")
    assert isinstance(result, Detection), result.to_dict()
    assert box_iou(result.box_xyxy, body) >= 0.5

    # The case under test: read in its own colours, the mug is not a mug, and "mug" names no colour to ask.
    proposals, regions = _regions(locator, scene)
    row = int(np.argmax([box_iou(b + np.array([0, 0, 1, 1]), np.add(mug.box_xyxy, [0, 0, 1, 1]))
                         for b in proposals.boxes_xyxy]))
    plain = locator._score_names(regions, "mug")
    assert plain.confidence[row] < locator.config.min_score and plain.rival[row] != "mug", plain.rival[row]
    assert attributes.colour_phrase("mug") is None


def test_without_a_colour_the_class_must_hold_in_each_turned_hue() -> None:
    # Seed 4242 is the probes' stream (tools/world/class_probe.py), not the gate's.
    locator = _scene_locator(4242, 9)
    scene = generate_scene(4242, 8, SIZE, split="val")
    assert not [o for o in scene.objects if o.cls == "ball"]
    apple = _truth(scene, "yellow", "apple")
    assert isinstance(locator.locate(scene.image, "pick the ball"), NotFound)

    # The case under test: averaged over the three hues (as a colour phrase's class is), the yellow apple is a ball.
    proposals, regions = _regions(locator, scene)
    row = int(np.argmax([box_iou(b + np.array([0, 0, 1, 1]), apple) for b in proposals.boxes_xyxy]))
    blind = colour_blind.ColourBlindRegions(locator.matcher, scene.image, proposals.boxes_xyxy, proposals.masks,
                                            regions)
    averaged = locator._score_names(blind.embeddings(np.array([row])), "ball")
    assert averaged.confidence[0] >= locator.config.min_score


def test_without_a_colour_only_regions_where_the_class_is_in_the_running_are_turned() -> None:
    locator = _scene_locator(4242, 15)
    scene = generate_scene(4242, 14, SIZE, split="val")
    assert not [o for o in scene.objects if o.cls == "ball"]
    assert isinstance(locator.locate(scene.image, "pick the ball"), NotFound)

    # The case under test: the whole frame reads as a ball in each turned hue, but its own reading does not rank
    # "ball" among the RANKED best names.
    proposals, regions = _regions(locator, scene)
    frame = int(np.argmax([np.prod(b[2:] - b[:2]) for b in proposals.boxes_xyxy]))
    assert proposals.boxes_xyxy[frame].tolist() == [0, 0, 639, 479]
    assert locator._score_names(regions[[frame]], "ball").rank[0] >= colour_blind.RANKED
    blind = colour_blind.ColourBlindRegions(locator.matcher, scene.image, proposals.boxes_xyxy, proposals.masks,
                                            regions)
    turned = [locator._score_names(view, "ball") for view in blind.turned(np.array([frame]))]
    assert colour_blind.in_each_hue(turned).confidence[0] >= locator.config.min_score


def test_without_a_colour_only_coloured_regions_are_turned() -> None:
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), mode="exact",
                           sam_checkpoint=str(WEIGHTS / "mobile_sam.pt"))
    if not Path(config.sam_checkpoint).is_file():
        pytest.skip(f"world MobileSAM is not at {config.sam_checkpoint}: the case needs its masks")
    locator = Locator(config)
    scene = generate_scene(VAL_SEED, 2, SIZE, split="val")
    spoon = _truth(scene, "white", "spoon")
    result = locator.locate(scene.image, "hand me the pen")
    assert not (isinstance(result, Detection) and box_iou(result.box_xyxy, spoon) >= 0.5), result.to_dict()

    # The case under test: world MobileSAM's white spoon ranks "pen" among the best names, but it is white.
    frame = locator.prepare(scene.image)
    proposals = locator._exact_proposals(frame)
    row = int(np.argmax([box_iou(b + np.array([0, 0, 1, 1]), spoon) for b in proposals.boxes_xyxy]))
    regions = locator.matcher.encode_regions(scene.image, proposals.boxes_xyxy[[row]], proposals.masks[[row]])
    assert locator._score_names(regions, "pen").rank[0] < colour_blind.RANKED
    assert colour_blind.chroma(scene.image, proposals.masks, np.array([row]))[0] < colour_blind.CHROMATIC
