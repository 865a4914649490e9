"""The selection rules that keep a robot from boxing the wrong object, on hand-made masks and scores: competing
names in calibration, one score for ranking and gating, spatial words among target regions only, relations to an
anchor, explicit parts, and answers that say what of the command was not used."""

from __future__ import annotations

import numpy as np
import pytest

from promptbox import relations, vocabulary
from promptbox.command import Target
from promptbox.detection import Detection, NotFound, summary
from promptbox.selection import PhraseScores, calibrate, select

Rect = tuple[int, int, int, int]


def scene(*rects: Rect, size: tuple[int, int] = (100, 160)) -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((len(rects), *size), dtype=bool)
    for k, (x0, y0, x1, y1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = True
    return masks, np.array(rects, dtype=np.float64).reshape(-1, 4)


def box(rect: Rect) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in rect)  # type: ignore[return-value]


def scores(phrase: str, conf: list[float], top1: list[bool] | None = None) -> PhraseScores:
    c = np.array(conf)
    return PhraseScores(phrase, c * 0.3, c, c >= 0.5 if top1 is None else np.array(top1))


# --- 1. calibration against competing names --------------------------------------------------------------------------


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_a_scissors_crop_asked_as_screwdriver_loses_to_the_name_scissors() -> None:
    # Embeddings in a toy 3-d joint space: the crop is a pair of scissors; "screwdriver" is a tool too, so its
    # cosine is well above the scenery phrases: against scenery alone (the old calibration) it passes easily.
    names = ["scissors", "screwdriver", "mug"]
    name_vectors = np.stack([_unit(1, 0.2, 0), _unit(0.5, 1, 0), _unit(0, 0, 1)])
    target = name_vectors[1]
    crop = _unit(1, 0.25, 0.05)
    scenery = np.stack([_unit(0.1, 0.1, 1)] * 3)
    old_style = calibrate(np.array([crop @ target]), (crop @ scenery.T)[None])
    assert old_style[0] > 0.9  # the defect: any object beats "a table"
    keep = vocabulary.competitors("screwdriver", target, names, name_vectors)
    assert [names[i] for i in keep] == ["scissors", "mug"]  # its own name is not its competitor
    rivals = np.concatenate([name_vectors[keep], scenery])
    confidence = calibrate(np.array([crop @ target]), (crop @ rivals.T)[None])
    assert confidence[0] < 0.5


def test_competitors_leave_out_the_head_noun_and_near_synonyms() -> None:
    # A CLIP-like text space: every name shares one large common direction (raw pairwise cosine above 0.9, as the
    # world CLIPs' vocabularies measure), plus a small direction of its own. "cup" shares most of "mug"'s own
    # direction; the other names are unrelated.
    rng = np.random.default_rng(0)
    own = np.linalg.qr(rng.normal(size=(64, 64)))[0][:40]
    common = np.zeros(64)
    common[-1] = 1.0
    names = ["mug", "coffee mug", "cup", "bowl", *[f"thing {i}" for i in range(36)]]
    parts = own.copy()
    parts[1] = own[0] + 0.05 * own[1]  # "coffee mug": mug's own direction
    parts[2] = own[0] + 0.2 * own[2]  # "cup": nearly mug's own direction
    vectors = np.stack([_unit(*(common * 3 + p)) for p in parts])
    phrase_vector = _unit(*(common * 3 + own[0] + 0.05 * own[39]))  # "red mug"
    raw = vectors @ vectors.T
    assert raw[np.triu_indices(len(names), 1)].min() > 0.85  # the narrow cone: a raw bound would drop nearly all
    kept = [names[i] for i in vocabulary.competitors("red mug", phrase_vector, names, vectors)]
    # "mug" and "coffee mug" share the head noun; "cup" is a near-synonym; every unrelated name competes.
    assert kept == [n for n in names if n not in ("mug", "coffee mug", "cup")]


def test_an_attribute_phrase_competes_with_its_other_colours() -> None:
    variants = vocabulary.colour_variants("red mug")
    assert "blue mug" in variants and "green mug" in variants and "red mug" not in variants
    assert vocabulary.colour_variants("mug") == []
    assert vocabulary.head_noun("cap of marker") == "cap" and vocabulary.head_noun("red mug") == "mug"


def test_a_colour_of_several_words_is_replaced_whole() -> None:
    """"black and white mug" competes with "red mug", ..., not with "white and white mug" (its first word replaced)
    nor with its own colours alone."""
    variants = vocabulary.colour_variants("black and white mug")
    assert "red mug" in variants and "grey mug" in variants
    assert not any(v.startswith(("white and", "black and")) or v in ("black mug", "white mug") for v in variants)
    assert len(variants) == len(vocabulary.COLOUR_WORDS) - 3  # neither black, white nor "gray", the spelling of grey
    # A colour elsewhere in the phrase is not part of the first run, and stays.
    assert "blue mug with white handle" in vocabulary.colour_variants("red mug with white handle")


def test_the_vocabulary_is_a_few_hundred_distinct_object_names() -> None:
    assert 200 <= len(vocabulary.OBJECT_NAMES) == len(set(vocabulary.OBJECT_NAMES))
    assert {"scissors", "screwdriver", "mug", "laptop"} <= set(vocabulary.OBJECT_NAMES)


# --- 2. one score ranks and gates ------------------------------------------------------------------------------------

SCENERY: Rect = (0, 0, 160, 60)  # a big table region: the highest raw cosine, but scenery is its top label
MUG: Rect = (20, 70, 50, 95)


def test_a_region_with_the_highest_raw_cosine_but_low_confidence_does_not_hide_the_confident_one() -> None:
    masks, boxes = scene(SCENERY, MUG)
    result = select(masks, boxes, np.array([0.35, 0.30]), np.array([0.05, 0.999]), Target("mug"), min_score=0.5)
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(MUG)


# --- 3. spatial words choose among target regions -----------------------------------------------------------------

SCISSORS_LEFT: Rect = (5, 70, 30, 95)
MUG_RIGHT: Rect = (110, 70, 140, 95)


def test_the_mug_on_the_left_is_never_the_scissors_on_the_left() -> None:
    masks, boxes = scene(SCISSORS_LEFT, MUG_RIGHT)
    # The scissors pass min_score (calibration is not perfect), but their top-1 label is "scissors", not "mug".
    result = select(masks, boxes, np.array([0.28, 0.31]), np.array([0.55, 0.9]), Target("mug", spatial="left"),
                    min_score=0.5, is_target=np.array([False, True]))
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(MUG_RIGHT)


SCISSORS_RIGHT: Rect = (110, 70, 140, 95)


def test_an_unconfident_target_first_in_the_order_makes_the_spatial_answer_not_found() -> None:
    # Two scissors; the CLIP is sure of the right one (0.91) and nearly of the left one (0.49: its top-1 name, but
    # "pen" takes much of the share). "The scissors on the left" among the confident ones alone is the right pair: a
    # wrong object. The left one may be the scissors meant, so the answer is not found, naming it.
    masks, boxes = scene(SCISSORS_LEFT, SCISSORS_RIGHT)
    conf = np.array([0.49, 0.91])
    left = select(masks, boxes, conf * 0.3, conf, Target("scissors", spatial="left"), min_score=0.5,
                  is_target=np.array([True, True]))
    assert isinstance(left, NotFound) and left.best is not None and left.best.box_xyxy == box(SCISSORS_LEFT)
    assert "comes before the confident ones in the order of 'left'" in left.reason
    right = select(masks, boxes, conf * 0.3, conf, Target("scissors", spatial="right"), min_score=0.5,
                   is_target=np.array([True, True]))
    assert isinstance(right, Detection) and right.box_xyxy == box(SCISSORS_RIGHT)  # nothing doubtful before it
    other = select(masks, boxes, conf * 0.3, conf, Target("scissors", spatial="left"), min_score=0.5,
                   is_target=np.array([False, True]))  # the left region's top-1 name is something else
    assert isinstance(other, Detection) and other.box_xyxy == box(SCISSORS_RIGHT)


# --- 4. relations ----------------------------------------------------------------------------------------------------

BOOK: Rect = (60, 40, 100, 90)
PEN_NEAR: Rect = (102, 45, 112, 80)  # 2 px right of the book, its centre a little higher
PEN_FAR: Rect = (5, 5, 15, 40)


def _pens(relation: str, anchor_conf: list[float], pen_conf: list[float] | None = None):
    masks, boxes = scene(PEN_FAR, PEN_NEAR, BOOK)
    conf = np.array(pen_conf or [0.95, 0.8, 0.1])  # the far pen is the more confident
    return select(masks, boxes, conf * 0.3, conf, Target("pen", relation=relation, anchor="book"), min_score=0.5,
                  anchor=scores("book", anchor_conf))


def test_the_pen_next_to_the_book_is_the_near_one_not_the_more_confident_far_one() -> None:
    result = _pens("next to", [0.1, 0.1, 0.9])
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(PEN_NEAR)


@pytest.mark.parametrize(("relation", "expected"), [("right of", PEN_NEAR), ("left of", PEN_FAR),
                                                    ("far from", PEN_FAR), ("above", PEN_NEAR)])
def test_directional_relations_choose_by_geometry(relation: str, expected: Rect) -> None:
    result = _pens(relation, [0.1, 0.1, 0.9], [0.8, 0.95, 0.1])
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(expected), relation


def test_no_candidate_in_the_relation_is_not_found_saying_so() -> None:
    result = _pens("under", [0.1, 0.1, 0.9])
    assert isinstance(result, NotFound)
    assert result.reason == "no 'pen' is under the 'book'"


def test_a_pen_farther_from_the_book_than_its_own_length_is_not_next_to_it() -> None:
    # Only the far pen is proposed (the one meant was missed): the nearest of those seen is no answer. World
    # MobileSAM, val scene 6: "the scissors next to the book" boxed the other scissors, 139 px from the book.
    masks, boxes = scene(PEN_FAR, BOOK)
    conf = np.array([0.95, 0.1])
    result = select(masks, boxes, conf * 0.3, conf, Target("pen", relation="next to", anchor="book"), min_score=0.5,
                    anchor=scores("book", [0.1, 0.9]))
    assert isinstance(result, NotFound) and result.reason == "no 'pen' is next to the 'book'"
    pen, book = np.array(PEN_FAR, float), np.array(BOOK, float)
    assert relations.gap(pen, book) == 45.0 > 35.0  # the pen's length: no pen fits between them
    assert relations.fit("near", pen, book) is None
    assert relations.fit("next to", np.array(PEN_NEAR, float), book) == 2.0
    assert relations.fit("far from", pen, book) == -45.0  # "far from" has no bound


def test_an_anchor_that_is_not_found_makes_the_answer_not_found_naming_it() -> None:
    result = _pens("next to", [0.1, 0.1, 0.3])
    assert isinstance(result, NotFound)
    assert "the anchor 'book' was not found" in result.reason and "0.30, below min_score 0.50" in result.reason


def test_a_relation_that_cannot_be_resolved_is_reported_not_dropped() -> None:
    masks, boxes = scene(PEN_FAR, PEN_NEAR)
    result = select(masks, boxes, np.array([0.3, 0.2]), np.array([0.9, 0.8]),
                    Target("pen", relation="between", anchor="book"), min_score=0.5)
    assert isinstance(result, Detection)
    assert result.notes and "'between'" in result.notes[0] and "not applied" in result.notes[0]
    assert "not applied" in summary(result, 0.1)


def test_relation_geometry() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert relations.gap(a, np.array([12.0, 0.0, 20.0, 10.0])) == 2.0
    assert relations.gap(a, np.array([5.0, 5.0, 20.0, 20.0])) == 0.0
    assert relations.fit("on", np.array([2.0, 2.0, 6.0, 6.0]), a) == -1.0
    assert relations.fit("on", np.array([8.0, 8.0, 20.0, 20.0]), a) is None
    with pytest.raises(ValueError, match="'between' is not resolved"):
        relations.fit("between", a, a)


def _masks(*parts: list[Rect], size: tuple[int, int] = (100, 160)) -> tuple[np.ndarray, np.ndarray]:
    """Masks that are unions of rectangles (a group of touching objects is one mask), and their xyxy boxes."""
    masks = np.zeros((len(parts), *size), dtype=bool)
    for k, rects in enumerate(parts):
        for x0, y0, x1, y1 in rects:
            masks[k, y0:y1, x0:x1] = True
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return masks, np.array(boxes, dtype=np.float64)


SPOON: Rect = (60, 40, 100, 60)
DRIVER_NEAR: Rect = (95, 20, 105, 80)  # lies across the spoon's end
DRIVER_FAR: Rect = (5, 5, 15, 60)


def test_a_target_region_holding_the_anchor_gives_way_to_the_target_inside_it() -> None:
    # SAM's widest level took the near screwdriver and the spoon under it; that mask reads "screwdriver" (0.965) a
    # little above the screwdriver alone (0.96), so it stood for the near screwdriver among the candidates, and,
    # holding the spoon, it was skipped: the far screwdriver was the answer (world oracle masks, val scene 8).
    masks, boxes = _masks([DRIVER_FAR], [DRIVER_NEAR, SPOON], [DRIVER_NEAR], [SPOON])
    conf = np.array([0.97, 0.965, 0.96, 0.01])
    result = select(masks, boxes, conf * 0.3, conf, Target("screwdriver", relation="next to", anchor="spoon"),
                    min_score=0.5, anchor=scores("spoon", [0.0, 0.6, 0.0, 0.99]))
    assert isinstance(result, Detection) and result.box_xyxy == box(DRIVER_NEAR)


BOOK_NEAR: Rect = (60, 40, 100, 90)
SCISSORS_ON: Rect = (70, 50, 90, 70)  # on the book
SCISSORS_AWAY: Rect = (5, 5, 25, 25)


@pytest.mark.parametrize("book_alone", [0.3, 0.9])
def test_an_anchor_region_holding_a_target_candidate_is_no_anchor(book_alone: float) -> None:
    # The book with the scissors on it reads "book" (0.98); as the anchor it would hold the scissors meant, which
    # are then skipped as a part of it, and the scissors far away answer "the scissors next to the book".
    masks, boxes = _masks([SCISSORS_AWAY], [SCISSORS_ON], [BOOK_NEAR], [BOOK_NEAR])
    masks[2, 50:70, 70:90] = False  # the book alone, around the scissors
    conf = np.array([0.98, 0.97, 0.0, 0.0])
    result = select(masks, boxes, conf * 0.3, conf, Target("scissors", relation="next to", anchor="book"),
                    min_score=0.5, anchor=scores("book", [0.0, 0.0, book_alone, 0.98]))
    if book_alone < 0.5:  # only the book-and-scissors region is confidently a book: no anchor of its own
        assert isinstance(result, NotFound)
        assert "the anchor 'book' was not found apart from a 'scissors'" in result.reason
    else:
        assert isinstance(result, Detection) and result.box_xyxy == box(SCISSORS_ON)


SD_LEFT: Rect = (10, 40, 40, 60)
BANANA_LONG: Rect = (40, 40, 150, 60)  # touching it, reaching far right
SD_RIGHT: Rect = (60, 70, 90, 90)


def test_a_spatial_word_chooses_among_objects_not_groups() -> None:
    # The left screwdriver and the banana touching it, as one mask, read "screwdriver" above the screwdriver alone;
    # standing for it, their centre (x 80) lies right of the other screwdriver's (x 75).
    masks, boxes = _masks([SD_LEFT, BANANA_LONG], [SD_LEFT], [SD_RIGHT])
    conf = np.array([0.97, 0.96, 0.95])
    target = Target("screwdriver", spatial="left")
    plain = select(masks, boxes, conf * 0.3, conf, target, min_score=0.5)
    assert plain.box_xyxy == box(SD_RIGHT)  # the case under test: without the group check, the wrong one
    asked: list[tuple[int, int]] = []
    result = select(masks, boxes, conf * 0.3, conf, target, min_score=0.5,
                    is_group=lambda container, inner: asked.append((container, inner)) or container == 0)
    assert isinstance(result, Detection) and result.box_xyxy == box(SD_LEFT)
    assert asked == [(0, 1)]


# --- 5. explicit parts -----------------------------------------------------------------------------------------------

MARKER: Rect = (20, 40, 120, 60)
CAP: Rect = (95, 40, 120, 60)  # inside the marker
OTHER_CAP: Rect = (130, 70, 150, 90)  # a cap of something else, scoring higher for "cap of marker"


def test_the_cap_of_the_marker_is_the_cap_inside_the_marker_not_the_whole_marker() -> None:
    masks, boxes = scene(MARKER, CAP, OTHER_CAP)
    conf = np.array([0.7, 0.75, 0.8])
    result = select(masks, boxes, np.array([0.30, 0.299, 0.31]), conf, Target("cap of marker"), min_score=0.5,
                    whole=scores("marker", [0.95, 0.2, 0.1]))
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(CAP)  # whole-over-parts would give MARKER; the best "cap" alone OTHER_CAP


def test_a_part_is_as_found_as_its_whole_and_needs_a_region_inside_it() -> None:
    masks, boxes = scene(MARKER, CAP)
    # Object names compete with "marker", not with "cap of marker": the whole's confidence is the evidence.
    found = select(masks, boxes, np.array([0.3, 0.3]), np.array([0.7, 0.3]), Target("cap of marker"),
                   min_score=0.5, whole=scores("marker", [0.9, 0.1]))
    assert isinstance(found, Detection) and found.box_xyxy == box(CAP) and found.score == pytest.approx(0.9)
    missing = select(masks, boxes, np.array([0.3, 0.3]), np.array([0.7, 0.3]), Target("cap of marker"),
                     min_score=0.5, whole=scores("marker", [0.2, 0.1]))
    assert isinstance(missing, NotFound)
    assert "the 'marker' that 'cap of marker' belongs to was not found (best 0.20" in missing.reason
    assert "the best part region scored 0.30, below min_score 0.50" in missing.reason
    apart, apart_boxes = scene(CAP, OTHER_CAP)  # nothing contains anything
    alone = select(apart, apart_boxes, np.array([0.3, 0.3]), np.array([0.7, 0.8]), Target("cap of marker"),
                   min_score=0.5, whole=scores("marker", [0.2, 0.1]))
    assert isinstance(alone, NotFound)
    assert "no region inside a 'marker' was proposed for 'cap of marker'" in alone.reason


def test_a_found_whole_with_nothing_proposed_inside_is_named_as_found() -> None:
    # World MobileSAM proposes the mug (0.995) but no region inside it, while a group elsewhere holds a region: the
    # answer said "the 'mug' that 'handle of mug' belongs to was not found (best 0.00)", naming the group's score.
    mug, group, inner = (10, 10, 40, 40), (60, 10, 150, 90), (70, 20, 90, 40)
    masks, boxes = scene(mug, group, inner)
    result = select(masks, boxes, np.array([0.2, 0.2, 0.2]), np.array([0.1, 0.0, 0.2]), Target("handle of mug"),
                    min_score=0.5, whole=scores("mug", [0.995, 0.0, 0.0]))
    assert isinstance(result, NotFound) and result.best is not None and result.best.box_xyxy == box(mug)
    assert result.reason == "the 'mug' was found (0.99) but no region inside it was proposed for 'handle of mug'"


def test_a_part_named_confidently_by_itself_needs_no_confident_whole() -> None:
    # The CLIP misnames the whole marker (0.2), but the region inside it is confidently "cap of marker" against the
    # object names ("marker" among them): the cap is found, on its own evidence, and the answer says so.
    masks, boxes = scene(MARKER, CAP, OTHER_CAP)
    conf = np.array([0.3, 0.8, 0.9])  # OTHER_CAP scores higher, but lies inside nothing: not a part of anything seen
    found = select(masks, boxes, np.array([0.3, 0.31, 0.32]), conf, Target("cap of marker"), min_score=0.5,
                   whole=scores("marker", [0.2, 0.1, 0.1]))
    assert isinstance(found, Detection) and found.box_xyxy == box(CAP) and found.score == pytest.approx(0.8)
    assert "'marker' was not confidently named" in found.notes[0]
    # A confident whole still decides: the region inside it, scored by the whole.
    by_whole = select(masks, boxes, np.array([0.3, 0.31, 0.32]), conf, Target("cap of marker"), min_score=0.5,
                      whole=scores("marker", [0.9, 0.1, 0.1]))
    assert isinstance(by_whole, Detection) and by_whole.score == pytest.approx(0.9) and not by_whole.notes


GREEN_BOOK: Rect = (20, 10, 70, 60)  # the cover: the whole book's mask has the same box, and NMS kept one of them
GROUP: Rect = (80, 10, 150, 90)  # two touching objects, with one of them inside
INNER: Rect = (85, 15, 110, 40)


def test_the_body_of_a_confident_whole_with_nothing_inside_is_the_whole() -> None:
    # The green book is confidently named (0.95), but no region inside it was proposed. The cover is the book's
    # body, so the book's region answers, saying so; before, the search moved on to the unconfident GROUP and the
    # answer was "the 'green book' ... was not found (best 0.05 ...)", which is false.
    masks, boxes = scene(GREEN_BOOK, GROUP, INNER)
    whole = scores("green book", [0.95, 0.05, 0.02])
    result = select(masks, boxes, np.array([0.2, 0.1, 0.1]), np.array([0.01, 0.0, 0.0]),
                    Target("cover of green book"), min_score=0.5, whole=whole)
    assert isinstance(result, Detection) and result.box_xyxy == box(GREEN_BOOK)
    assert result.score == pytest.approx(0.95)
    assert "no region inside the 'green book' was proposed for 'cover'" in result.notes[0]


def test_a_part_that_is_not_the_body_is_never_answered_with_its_whole() -> None:
    masks, boxes = scene(GREEN_BOOK, GROUP, INNER)
    result = select(masks, boxes, np.array([0.2, 0.1, 0.1]), np.array([0.01, 0.0, 0.0]), Target("cap of marker"),
                    min_score=0.5, whole=scores("marker", [0.95, 0.05, 0.02]))
    assert isinstance(result, NotFound)
    assert vocabulary.BODY_PARTS <= vocabulary.PART_NOUNS


def test_part_requests_are_recognised_by_their_part_noun() -> None:
    assert vocabulary.part_request("cap of marker") == ("cap", "marker")
    assert vocabulary.part_request("head of the screwdriver") == ("head", "screwdriver")
    assert vocabulary.part_request("bottle of water") is None
    assert vocabulary.part_request("mug") is None


def test_a_not_found_answer_says_what_its_best_region_reads_as() -> None:
    # "the green mug" where the only mug reads as "white mug": not found (a box would be a false one whenever the
    # mug really is white, which the model cannot tell from a colour-class pair it never saw), and the reason says
    # what the model saw, so the user can ask again.
    masks, boxes = scene(MUG, SCISSORS_LEFT)
    result = select(masks, boxes, np.array([0.3, 0.2]), np.array([0.1, 0.0]), Target("green mug"), min_score=0.5,
                    is_target=np.array([False, False]), rival=("white mug", "scissors"))
    assert isinstance(result, NotFound)
    assert result.reason == "best candidate for 'green mug' scored 0.10, below min_score 0.50 (it reads as 'white mug')"


# --- 7. the answer says what was not used ----------------------------------------------------------------------------


def test_a_spatial_word_overruled_by_a_relation_is_reported() -> None:
    masks, boxes = scene(PEN_FAR, PEN_NEAR, BOOK)
    conf = np.array([0.95, 0.8, 0.1])
    result = select(masks, boxes, conf * 0.3, conf, Target("pen", spatial="left", relation="next to",
                    anchor="book"), min_score=0.5, anchor=scores("book", [0.1, 0.1, 0.9]))
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(PEN_NEAR)
    assert any("'left' was not applied" in note for note in result.notes)
    assert Detection("pen", (0.0, 0.0, 1.0, 1.0), 0.9, None, notes=["x"]).to_dict()["notes"] == ["x"]
