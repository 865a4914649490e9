"""select() and calibrate() on hand-drawn masks with known scores: the oracle cases assert the exact box chosen."""

from __future__ import annotations

import numpy as np
import pytest

from promptbox.command import Target
from promptbox.detection import Candidate, Detection, NotFound
from promptbox.selection import BACKGROUND_PHRASES, calibrate, select

Rect = tuple[int, int, int, int]


def scene(*rects: Rect, size: tuple[int, int] = (100, 100)) -> tuple[np.ndarray, np.ndarray]:
    """Masks (N,H,W) with one filled rectangle each, and their xyxy boxes (x1, y1 exclusive)."""
    masks = np.zeros((len(rects), *size), dtype=bool)
    for k, (x0, y0, x1, y1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = True
    return masks, np.array(rects, dtype=np.float64).reshape(-1, 4)


def run(rects: list[Rect], sim: list[float], conf: list[float] | None = None, *, spatial: str | None = None,
        phrase: str = "mug", min_score: float = 0.5, **kw) -> Detection | NotFound:
    masks, boxes = scene(*rects)
    # By default confidence follows similarity (one object's regions face the same competitors), all above 0.5.
    conf = [min(1.0, 0.5 + v) for v in sim] if conf is None else conf
    return select(masks, boxes, np.array(sim), np.array(conf), Target(phrase, spatial=spatial),
                  min_score=min_score, **kw)


def box(rect: Rect) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in rect)  # type: ignore[return-value]


# --- whole object over parts ----------------------------------------------------------------------------------------

HEAD: Rect = (10, 40, 30, 60)  # screwdriver head, 400 px
TOOL: Rect = (10, 40, 90, 60)  # the whole screwdriver, contains the head, 1600 px
TABLE: Rect = (0, 70, 100, 100)


def test_screwdriver_whole_tool_beats_its_slightly_better_scoring_head() -> None:
    masks, boxes = scene(HEAD, TOOL, TABLE)
    sim = np.array([0.31, 0.30, 0.18])
    conf = calibrate(sim, np.full((3, len(BACKGROUND_PHRASES)), 0.2))
    result = select(masks, boxes, sim, conf, Target("screwdriver"), min_score=0.5)
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(TOOL)
    assert result.score == pytest.approx(conf[1])
    assert np.array_equal(result.mask, masks[1])
    assert result.phrase == "screwdriver"


# A screwdriver with a banana touching it: SAM's widest level takes both, and its crop reads "screwdriver" as
# strongly as the screwdriver alone (the world oracle's first pass: 0.973 and 0.972).
BANANA: Rect = (50, 40, 90, 60)
PAIR: Rect = (10, 40, 90, 60)  # the screwdriver HEAD-sized region plus the banana beside it
ALONE: Rect = (10, 40, 50, 60)


def test_a_group_of_touching_objects_is_set_aside_for_the_object_it_holds() -> None:
    asked: list[tuple[int, int]] = []

    def is_group(container: int, inner: int) -> bool:
        asked.append((container, inner))
        return (container, inner) == (1, 0)  # what PAIR adds to ALONE reads as a banana

    plain = run([ALONE, PAIR, TABLE], [0.300, 0.301, 0.18], phrase="screwdriver")
    assert plain.box_xyxy == box(PAIR)  # the case under test: without the rule, the group is the answer
    result = run([ALONE, PAIR, TABLE], [0.300, 0.301, 0.18], phrase="screwdriver", is_group=is_group)
    assert isinstance(result, Detection) and result.box_xyxy == box(ALONE)
    assert asked == [(1, 0)]  # asked once, about the chosen region and the confident target region inside it


def test_a_whole_whose_addition_is_no_other_object_still_beats_its_part() -> None:
    asked: list[tuple[int, int]] = []
    result = run([HEAD, TOOL, TABLE], [0.31, 0.30, 0.18], phrase="screwdriver",
                 is_group=lambda container, inner: asked.append((container, inner)) or False)
    assert isinstance(result, Detection) and result.box_xyxy == box(TOOL)
    assert asked == [(1, 0)]


def test_a_group_is_not_asked_about_when_nothing_confident_is_inside() -> None:
    asked: list[tuple[int, int]] = []
    # The head scores below min_score: the whole stands on its own evidence, with nothing inside to prefer.
    result = run([HEAD, TOOL, TABLE], [0.31, 0.30, 0.18], [0.2, 0.9, 0.0], phrase="screwdriver",
                 is_group=lambda container, inner: asked.append((container, inner)) or True)
    assert isinstance(result, Detection) and result.box_xyxy == box(TOOL) and asked == []


def test_after_setting_a_group_aside_the_next_container_is_checked_too() -> None:
    """A group inside a larger group: each is set aside in turn, down to the object."""
    wider: Rect = (5, 35, 95, 65)
    groups = {(2, 1), (1, 0)}  # each asked about its most confident target region inside
    result = run([ALONE, PAIR, wider, TABLE], [0.300, 0.301, 0.302, 0.18], phrase="screwdriver",
                 is_group=lambda container, inner: (container, inner) in groups)
    assert isinstance(result, Detection) and result.box_xyxy == box(ALONE)


def test_container_scoring_far_lower_leaves_the_part_chosen() -> None:
    result = run([HEAD, TOOL, TABLE], [0.31, 0.20, 0.18], phrase="screwdriver")
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(HEAD)


def test_larger_region_that_does_not_contain_the_best_does_not_steal() -> None:
    other: Rect = (40, 0, 95, 30)  # 1650 px, scores within the margin, but elsewhere
    result = run([HEAD, other, TABLE], [0.31, 0.305, 0.18])
    assert result.box_xyxy == box(HEAD)


def test_mostly_overlapping_but_not_containing_region_does_not_steal() -> None:
    shifted: Rect = (14, 40, 94, 60)  # covers 80% of the head: not enough
    result = run([HEAD, shifted], [0.31, 0.305])
    assert result.box_xyxy == box(HEAD)


def test_slightly_larger_region_is_a_duplicate_not_a_container() -> None:
    padded: Rect = (10, 40, 31, 60)  # contains the head but is only 5% bigger
    result = run([HEAD, padded], [0.31, 0.305])
    assert result.box_xyxy == box(HEAD)


def test_largest_eligible_container_wins() -> None:
    handle_and_head: Rect = (10, 40, 60, 60)
    result = run([HEAD, handle_and_head, TOOL], [0.31, 0.30, 0.295])
    assert result.box_xyxy == box(TOOL)


def test_containers_are_compared_with_the_original_best_so_they_cannot_drift_down() -> None:
    handle_and_head: Rect = (10, 40, 60, 60)
    # TOOL is within the margin of the middle container (0.30 - 0.285 < 0.02) but not of the head (0.31).
    result = run([HEAD, handle_and_head, TOOL], [0.31, 0.30, 0.285])
    assert result.box_xyxy == box(handle_and_head)


def test_part_margin_is_a_parameter() -> None:
    assert run([HEAD, TOOL], [0.31, 0.30], part_margin=0.0).box_xyxy == box(HEAD)
    assert run([HEAD, TOOL], [0.31, 0.25], part_margin=0.1).box_xyxy == box(TOOL)


def test_container_below_min_score_does_not_turn_a_found_part_into_not_found() -> None:
    result = run([HEAD, TOOL], [0.31, 0.30], [0.6, 0.4], min_score=0.5)
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(HEAD)


# --- not found ------------------------------------------------------------------------------------------------------


def test_not_found_names_the_score_and_min_score() -> None:
    result = run([HEAD, TABLE], [0.25, 0.19], [0.31, 0.05], phrase="scissors", min_score=0.5)
    assert isinstance(result, NotFound)
    assert not result.found
    assert result.phrase == "scissors"
    assert result.reason == "best candidate for 'scissors' scored 0.31, below min_score 0.50"
    assert result.best == Candidate(box(HEAD), score=0.31, raw_similarity=0.25)
    assert result.alternatives == [Candidate(box(TABLE), score=0.05, raw_similarity=0.19)]


def test_not_found_reason_never_prints_two_equal_numbers() -> None:
    result = run([HEAD], [0.25], [0.4996], min_score=0.5)
    assert isinstance(result, NotFound)
    assert "scored 0.4996, below min_score 0.5000" in result.reason


def test_empty_input_is_not_found_with_reason() -> None:
    masks = np.zeros((0, 100, 100), dtype=bool)
    result = select(masks, np.zeros((0, 4)), np.zeros(0), np.zeros(0), Target("pen"), min_score=0.5)
    assert isinstance(result, NotFound)
    assert result.reason == "no mask proposals in the image"
    assert result.best is None
    assert result.alternatives == []


def test_empty_input_accepts_flat_empty_boxes() -> None:
    masks = np.zeros((0, 10, 10), dtype=bool)
    result = select(masks, np.zeros(0), np.zeros(0), np.zeros(0), Target("pen"), min_score=0.5)
    assert isinstance(result, NotFound)


# --- spatial qualifiers ---------------------------------------------------------------------------------------------

LEFT_MUG: Rect = (10, 40, 30, 60)
RIGHT_MUG: Rect = (70, 30, 95, 55)  # bigger, higher, and its bottom edge is further up


@pytest.mark.parametrize(
    ("spatial", "expected"),
    [
        ("left", LEFT_MUG),
        ("right", RIGHT_MUG),
        ("top", RIGHT_MUG),
        ("bottom", LEFT_MUG),
        ("biggest", RIGHT_MUG),
        ("smallest", LEFT_MUG),
        ("nearest", LEFT_MUG),
        ("farthest", RIGHT_MUG),
    ],
)
def test_two_mugs_spatial(spatial: str, expected: Rect) -> None:
    for sims in ([0.30, 0.29], [0.29, 0.30]):  # whichever scores higher, the qualifier decides
        result = run([LEFT_MUG, RIGHT_MUG, TABLE], [*sims, 0.18], [0.8, 0.7, 0.1], spatial=spatial)
        assert isinstance(result, Detection)
        assert result.box_xyxy == box(expected), sims
        assert result.score == (0.8 if expected == LEFT_MUG else 0.7)


def test_center_picks_the_region_nearest_the_image_centre() -> None:
    middle: Rect = (40, 45, 60, 65)
    result = run([LEFT_MUG, middle, RIGHT_MUG], [0.31, 0.29, 0.30], spatial="center")
    assert result.box_xyxy == box(middle)


def test_spatial_ignores_regions_below_min_score() -> None:
    far_left: Rect = (0, 0, 8, 8)
    result = run([far_left, LEFT_MUG, RIGHT_MUG], [0.24, 0.30, 0.29], [0.2, 0.8, 0.7], spatial="left")
    assert result.box_xyxy == box(LEFT_MUG)


def test_spatial_ignores_parts_of_plausible_regions() -> None:
    handle: Rect = (88, 40, 95, 50)  # part of the right mug, and the smallest region
    result = run([LEFT_MUG, RIGHT_MUG, handle], [0.30, 0.29, 0.31], [0.8, 0.7, 0.9], spatial="smallest")
    assert result.box_xyxy == box(LEFT_MUG)


def test_spatial_keeps_the_more_confident_of_near_duplicates() -> None:
    duplicate: Rect = (9, 40, 30, 60)  # box IoU with LEFT_MUG 0.95, a hair further left, less confident
    result = run([duplicate, LEFT_MUG, RIGHT_MUG], [0.29, 0.30, 0.29], [0.6, 0.8, 0.7], spatial="left")
    assert result.box_xyxy == box(LEFT_MUG)


def test_spatial_ties_go_to_the_more_confident() -> None:
    upper: Rect = (10, 10, 30, 30)
    lower: Rect = (10, 60, 30, 80)  # same centre x as upper
    result = run([upper, lower], [0.29, 0.30], [0.6, 0.8], spatial="left")
    assert result.box_xyxy == box(lower)


def test_spatial_with_nothing_plausible_is_not_found() -> None:
    result = run([LEFT_MUG, RIGHT_MUG], [0.25, 0.24], [0.3, 0.2], spatial="left", phrase="cup")
    assert isinstance(result, NotFound)
    assert result.reason == "best candidate for 'cup' scored 0.30, below min_score 0.50"
    assert result.best is not None and result.best.box_xyxy == box(LEFT_MUG)


# --- output -------------------------------------------------------------------------------------------------------


def test_alternatives_are_top_k_others_by_confidence() -> None:
    rects = [(10 * k, 0, 10 * k + 8, 8) for k in range(7)]
    sim = [0.20, 0.31, 0.22, 0.25, 0.21, 0.24, 0.23]
    conf = [0.10, 0.95, 0.30, 0.60, 0.20, 0.50, 0.40]
    result = run(rects, sim, conf, top_k=3)
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(rects[1])
    assert result.alternatives == [
        Candidate(box(rects[3]), score=0.60, raw_similarity=0.25),
        Candidate(box(rects[5]), score=0.50, raw_similarity=0.24),
        Candidate(box(rects[6]), score=0.40, raw_similarity=0.23),
    ]
    assert run(rects, sim, conf, top_k=0).alternatives == []
    assert len(run(rects, sim, conf, top_k=50).alternatives) == 6


def test_detection_holds_plain_python_types_and_its_own_mask() -> None:
    masks, boxes = scene(LEFT_MUG, RIGHT_MUG)
    result = select(masks, boxes.astype(np.float32), np.array([0.3, 0.2], dtype=np.float32),
                    np.array([0.8, 0.1], dtype=np.float32), Target("mug"), min_score=0.5)
    assert isinstance(result, Detection)
    assert all(type(v) is float for v in result.box_xyxy)
    assert type(result.score) is float
    assert all(type(c.score) is float and type(c.raw_similarity) is float for c in result.alternatives)
    assert result.mask.dtype == bool and result.mask.shape == (100, 100)
    assert result.mask.base is None or result.mask.base is not masks  # not a view into the proposal stack
    result.to_dict()  # serialisable as the Detection dataclass defines it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"masks": np.zeros((2, 10))}, "masks has shape"),
        ({"boxes_xyxy": np.zeros((2, 3))}, "boxes_xyxy has shape"),
        ({"similarity": np.zeros(3)}, "similarity has shape"),
        ({"confidence": np.array([0.5, np.nan])}, "confidence contains NaN"),
        ({"part_margin": -0.1}, "part_margin=-0.1"),
        ({"top_k": -1}, "top_k=-1"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict, message: str) -> None:
    masks, boxes = scene(LEFT_MUG, RIGHT_MUG)
    args = {"masks": masks, "boxes_xyxy": boxes, "similarity": np.array([0.3, 0.2]),
            "confidence": np.array([0.8, 0.1]), "target": Target("mug"), "min_score": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        select(**args)


# --- calibrate ----------------------------------------------------------------------------------------------------


def test_calibrate_is_monotone_in_similarity_and_within_0_1() -> None:
    sim = np.linspace(-0.2, 0.6, 41)
    bg = np.tile([0.20, 0.22, 0.18, 0.25], (41, 1))
    conf = calibrate(sim, bg)
    assert conf.shape == (41,)
    assert np.all((conf >= 0) & (conf <= 1))
    assert np.all(np.diff(conf) > 0)


def test_calibrate_shares_over_target_and_backgrounds_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    sim = rng.uniform(0.1, 0.35, 5)
    bg = rng.uniform(0.1, 0.35, (5, 3))
    scores = np.column_stack([sim, bg])
    shares = [calibrate(scores[:, k], np.delete(scores, k, axis=1)) for k in range(4)]
    assert np.allclose(np.sum(shares, axis=0), 1.0)


def test_calibrate_tie_with_backgrounds_is_an_even_share() -> None:
    conf = calibrate(np.array([0.25]), np.full((1, 7), 0.25))
    assert conf[0] == pytest.approx(1 / 8)


def test_calibrate_target_far_above_background_is_confident() -> None:
    conf = calibrate(np.array([0.32]), np.full((1, len(BACKGROUND_PHRASES)), 0.22))
    assert conf[0] > 0.9
    assert calibrate(np.array([0.16]), np.full((1, len(BACKGROUND_PHRASES)), 0.22))[0] < 0.01


def test_calibrate_logit_scale_sharpens() -> None:
    sim, bg = np.array([0.27]), np.array([[0.25, 0.24]])
    assert calibrate(sim, bg, logit_scale=10.0)[0] < calibrate(sim, bg, logit_scale=100.0)[0]


def test_calibrate_is_stable_for_extreme_logits() -> None:
    conf = calibrate(np.array([1.0, -1.0]), np.array([[-1.0], [1.0]]), logit_scale=1000.0)
    assert np.array_equal(conf, [1.0, 0.0])


def test_calibrate_handles_no_regions() -> None:
    assert calibrate(np.zeros(0), np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize(
    ("sim", "bg", "message"),
    [
        (np.zeros((2, 1)), np.zeros((2, 3)), "similarity has shape"),
        (np.zeros(2), np.zeros(3), "background_similarity has shape"),
        (np.zeros(2), np.zeros((3, 3)), "N=2"),
        (np.zeros(2), np.zeros((2, 0)), "B >= 1"),
    ],
)
def test_calibrate_rejects_bad_shapes(sim: np.ndarray, bg: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate(sim, bg)


def test_background_phrases_are_generic_and_distinct() -> None:
    assert len(BACKGROUND_PHRASES) == len(set(BACKGROUND_PHRASES)) >= 5
    assert "background" in BACKGROUND_PHRASES
    # The prompt templates bring the article: "a photo of a {}." must not become "a photo of a a table.".
    assert not [p for p in BACKGROUND_PHRASES if p.split()[0] in ("a", "an", "the")]


# --- corners and ordinals -----------------------------------------------------------------------------------------


def pick(rects: list[Rect], conf: list[float], spatial: str, ordinal: int = 1,
         phrase: str = "cup") -> Detection | NotFound:
    masks, boxes = scene(*rects)
    return select(masks, boxes, np.array(conf) * 0.3, np.array(conf),
                  Target(phrase, spatial=spatial, ordinal=ordinal), min_score=0.5)


CORNERS: dict[str, Rect] = {
    "top left": (5, 5, 15, 15),
    "top right": (85, 5, 95, 15),
    "bottom left": (5, 85, 15, 95),
    "bottom right": (85, 85, 95, 95),
}
MIDDLE: Rect = (45, 45, 55, 55)


@pytest.mark.parametrize("corner", list(CORNERS))
def test_corner_picks_the_region_in_that_corner(corner: str) -> None:
    rects = [*CORNERS.values(), MIDDLE]
    for conf in ([0.9, 0.8, 0.7, 0.6, 0.95], [0.6, 0.7, 0.8, 0.9, 0.95]):  # confidence does not decide
        result = pick(rects, conf, corner)
        assert isinstance(result, Detection)
        assert result.box_xyxy == box(CORNERS[corner])


def test_corner_ranks_by_the_sum_of_normalised_positions() -> None:
    low_left: Rect = (0, 70, 10, 80)  # the leftmost, but low: x/W + y/H = 0.05 + 0.75 = 0.80
    high_right: Rect = (85, 0, 95, 10)  # the highest, but right: 0.90 + 0.05 = 0.95
    up_and_left: Rect = (30, 30, 40, 40)  # neither, but towards both: 0.35 + 0.35 = 0.70
    rects, conf = [low_left, high_right, up_and_left], [0.9, 0.8, 0.7]
    assert pick(rects, conf, "left").box_xyxy == box(low_left)
    assert pick(rects, conf, "top").box_xyxy == box(high_right)
    assert pick(rects, conf, "top left").box_xyxy == box(up_and_left)


def test_corner_uses_image_size_not_pixels() -> None:
    # A wide frame: 10 px of x weigh less than 10 px of y.
    masks = np.zeros((2, 50, 200), dtype=bool)
    rects: list[Rect] = [(20, 30, 30, 40), (40, 10, 50, 20)]  # keys 0.125 + 0.7 = 0.825 and 0.225 + 0.3 = 0.525
    for k, (x0, y0, x1, y1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = True
    result = select(masks, np.array(rects, dtype=np.float64), np.array([0.3, 0.3]), np.array([0.9, 0.8]),
                    Target("cup", spatial="top left"), min_score=0.5)
    assert result.box_xyxy == box(rects[1])


ROW: list[Rect] = [(10, 40, 20, 50), (40, 40, 50, 50), (70, 40, 80, 50)]  # three cups, left to right
ROW_CONF = [0.7, 0.9, 0.8]


@pytest.mark.parametrize(
    ("spatial", "ordinal", "expected"),
    [
        ("left", 1, 0),
        ("left", 2, 1),
        ("left", 3, 2),
        ("left", -1, 2),  # the last counted from the left: the rightmost
        ("left", -2, 1),
        ("left", -3, 0),
        ("right", 1, 2),
        ("right", 2, 1),
        ("right", -1, 0),
    ],
)
def test_ordinal_counts_along_the_qualifier(spatial: str, ordinal: int, expected: int) -> None:
    result = pick(ROW, ROW_CONF, spatial, ordinal)
    assert isinstance(result, Detection)
    assert result.box_xyxy == box(ROW[expected])
    assert result.score == ROW_CONF[expected]


def test_ordinal_by_size_and_in_a_corner() -> None:
    small: Rect = (10, 10, 20, 20)
    medium: Rect = (40, 10, 55, 25)
    large: Rect = (70, 10, 90, 30)
    assert pick([small, medium, large], [0.7, 0.8, 0.9], "biggest", 2).box_xyxy == box(medium)
    assert pick([small, medium, large], [0.7, 0.8, 0.9], "smallest", -1).box_xyxy == box(large)
    near_middle: Rect = (40, 40, 50, 50)  # 0.45 + 0.45: after the top left corner (0.2), before the others (1.0)
    rects = [*CORNERS.values(), near_middle]
    assert pick(rects, [0.9] * 5, "top left", 2).box_xyxy == box(near_middle)


def test_ordinal_ignores_regions_that_are_not_plausible() -> None:
    far_left: Rect = (0, 0, 8, 8)  # below min_score: not a cup, so not the first from the left
    result = pick([far_left, *ROW], [0.2, *ROW_CONF], "left", 2)
    assert result.box_xyxy == box(ROW[1])


def test_last_with_tied_positions_goes_to_the_more_confident() -> None:
    upper: Rect = (70, 10, 80, 20)
    lower: Rect = (70, 60, 80, 70)  # same centre x as upper, both the rightmost
    assert pick([ROW[0], upper, lower], [0.9, 0.6, 0.8], "left", -1).box_xyxy == box(lower)
    assert pick([ROW[0], upper, lower], [0.9, 0.8, 0.6], "left", -1).box_xyxy == box(upper)


@pytest.mark.parametrize(
    ("spatial", "ordinal", "reason"),
    [
        ("left", 4, "asked for the 4th 'cup' from the left but only 3 were found"),
        ("right", 5, "asked for the 5th 'cup' from the right but only 3 were found"),
        ("top left", 4, "asked for the 4th 'cup' from the top left but only 3 were found"),
        ("left", -4, "asked for the 4th-to-last 'cup' from the left but only 3 were found"),
        ("biggest", 4, "asked for the 4th 'cup' counting from the biggest but only 3 were found"),
    ],
)
def test_too_few_for_the_ordinal_is_not_found(spatial: str, ordinal: int, reason: str) -> None:
    result = pick(ROW, ROW_CONF, spatial, ordinal)
    assert isinstance(result, NotFound)
    assert result.reason == reason
    assert result.best is not None and result.best.box_xyxy == box(ROW[1])  # the most confident, for reference


def test_too_few_says_was_for_one() -> None:
    result = pick([ROW[0], ROW[1]], [0.9, 0.2], "left", 2)
    assert isinstance(result, NotFound)
    assert result.reason == "asked for the 2nd 'cup' from the left but only 1 was found"
