"""A colour phrase is the thing against other names times the colour against the thing's other colours: hand-made
scores for the rule, and the world CLIP with the world's exact masks for a case the eval met (the whole frame boxed
as "orange scissors" in a scene with no orange scissors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptbox import attributes, vocabulary
from promptbox.config import LocatorConfig
from promptbox.detection import NotFound
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.locator import Locator
from promptbox.selection import PhraseScores
from promptbox.world import generate_scene

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"
VAL_SEED = 20261123  # the world gate's validation stream


def test_a_colour_phrase_splits_into_its_colour_and_the_thing() -> None:
    green = attributes.colour_phrase("green mug")
    assert green is not None and (green.colour, green.thing) == ("green", "mug")
    assert "white mug" in green.variants and "green mug" not in green.variants
    big = attributes.colour_phrase("big red plastic mug")
    assert big is not None and big.thing == "big plastic mug"
    assert attributes.colour_phrase("mug") is None
    assert attributes.colour_phrase("red") is None  # nothing but a colour: no thing to ask about
    both = attributes.colour_phrase("black and white mug")
    assert both is not None and (both.colour, both.thing) == ("black and white", "mug")
    assert attributes.colour_phrase("salt and pepper shaker") is None  # "and" alone is no colour


def test_a_ruled_out_colour_of_the_same_thing_competes_in_the_colour_question() -> None:
    red = attributes.colour_phrase("red mug")
    assert red is not None
    colour, thing = attributes.split_negatives(red, ("blue mug", "scissors", "blue bowl"))
    assert colour == ("blue mug",) and thing == ("scissors", "blue bowl")


def _thing(conf: list[float], top1: list[bool], rival: tuple[str, ...]) -> PhraseScores:
    c = np.array(conf)
    return PhraseScores("mug", c * 0.3, c, np.array(top1), rival)


def test_the_confidence_is_the_thing_share_times_the_colour_share() -> None:
    green = attributes.colour_phrase("green mug")
    assert green is not None
    rivals = ("white mug", "red mug")
    # Region 0: a mug, clearly green. Region 1: a mug that reads white. Region 2: green, but an apple.
    thing = _thing([0.9, 0.9, 0.1], [True, True, False], ("cup", "cup", "apple"))
    sim = np.array([0.30, 0.25, 0.30])
    others = np.array([[0.20, 0.20], [0.30, 0.20], [0.20, 0.20]])
    scores = attributes.with_colour(thing, green, sim, others, rivals, logit_scale=100.0)
    share = np.exp(100 * sim) / (np.exp(100 * sim) + np.exp(100 * others).sum(axis=1))
    assert np.allclose(scores.confidence, thing.confidence * share)
    assert scores.confidence[0] > 0.5 > scores.confidence[1]
    assert scores.top1.tolist() == [True, False, False]
    # What a refused region reads as: its colour where the thing is right, its name where the thing is wrong.
    assert scores.rival[1] == "white mug" and scores.rival[2] == "apple"
    assert np.array_equal(scores.similarity, sim)  # raw cosine stays the full phrase's


def test_colour_rivals_must_match_their_names() -> None:
    green = attributes.colour_phrase("green mug")
    assert green is not None
    thing = _thing([0.9], [True], ("cup",))
    with pytest.raises(ValueError, match=r"rival_similarity has shape \(1, 1\); accepted: \(1, 2\)"):
        attributes.with_colour(thing, green, np.array([0.3]), np.array([[0.2]]), ("white mug", "red mug"), 100.0)


@pytest.fixture(scope="module")
def locator() -> Locator:
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), mode="exact")
    return Locator(config, proposer=WorldMaskProposer(VAL_SEED, 3, (640, 480), settings=config.amg))


def test_an_absent_colour_is_not_boxed_where_the_thing_and_the_colour_each_barely_pass(locator: Locator) -> None:
    scene = generate_scene(VAL_SEED, 2, (640, 480), split="val")
    assert not [o for o in scene.objects if (o.cls, o.colour) == ("scissors", "orange")]
    result = locator.locate(scene.image, "please take the orange scissors")
    assert isinstance(result, NotFound), result.to_dict()

    # The case under test: asked as one question (the phrase against every name, scenery and its other colours at
    # once), a region of this scene passes, so any box would be a false one.
    proposals = locator._exact_proposals(locator.prepare(scene.image))
    regions = locator.matcher.encode_regions(scene.image, proposals.boxes_xyxy, proposals.masks)
    one = locator._score_names(regions, "orange scissors", tuple(vocabulary.colour_variants("orange scissors")))
    passing = np.flatnonzero((one.confidence >= locator.config.min_score) & one.top1)
    assert passing.size, "no region passes the one-question score: the scene no longer shows the case"
    # Split, both questions must hold: this region (the whole frame) reads as scissors only barely and as orange
    # among the scissors' colours; the product of the two shares stays below min_score.
    split = locator._score(regions, "orange scissors")
    assert (split.confidence[passing] < locator.config.min_score).all()


def test_a_colour_with_no_class_stays_one_question(locator: Locator) -> None:
    # "the red one" parses to "red object": asked "object" against the names, every region would be refused.
    scene = generate_scene(VAL_SEED, 0, (640, 480), split="val")
    proposals = locator._exact_proposals(locator.prepare(scene.image))
    regions = locator.matcher.encode_regions(scene.image, proposals.boxes_xyxy, proposals.masks)
    one = locator._score_names(regions, "red object", tuple(vocabulary.colour_variants("red object")))
    assert np.array_equal(locator._score(regions, "red object").confidence, one.confidence)
    split = locator._score(regions, "red mug")
    assert not np.array_equal(split.confidence, locator._score_names(
        regions, "red mug", tuple(vocabulary.colour_variants("red mug"))).confidence)
