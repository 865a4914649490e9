"""metrics.py on hand-computed values: IoU edge cases, one judgement per failure kind, the rates and percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from promptbox.evaluation.metrics import (
    CORRECT,
    FALSE_BOX,
    MISS,
    PART,
    POOR_BOX,
    WRONG_OBJECT,
    box_iou,
    inside_fraction,
    judge,
    latency,
    mask_iou,
    stage_latency,
    summarize,
)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching at x=10: pixel edges share no pixel
        ((0, 0, 10, 10), (0, 10, 10, 20), 0.0),  # touching at y=10
        ((0, 0, 10, 10), (0, 0, 20, 20), 0.25),  # contained: 100 / 400
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlap: inter 5*10=50, union 100+100-50=150
        ((5, 5, 5, 10), (0, 0, 10, 10), 0.0),  # zero-area box: inter 0, union 100
        ((5, 5, 5, 5), (5, 5, 5, 5), 0.0),  # two zero-area boxes: empty union is no overlap, not a division by 0
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # apart
    ],
)
def test_box_iou(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)


def test_inside_fraction():
    assert inside_fraction((0, 0, 10, 10), (5, 0, 20, 10)) == pytest.approx(0.5)  # 5*10 of 100 inside
    assert inside_fraction((2, 2, 4, 4), (0, 0, 10, 10)) == 1.0
    assert inside_fraction((5, 5, 5, 9), (0, 0, 10, 10)) == 0.0  # zero area covers nothing


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared -> 4 / 12
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 0.0
    with pytest.raises(ValueError, match="mask shapes differ"):
        mask_iou(a, np.zeros((3, 4), bool))


def test_the_second_acceptable_box_counts_as_correct():
    # IoU with the first box 0; with the second inter 40*30=1200, union 40*40=1600 -> 0.75
    outcome = judge([(0, 0, 20, 20), (60, 60, 100, 100)], (60, 60, 100, 90))
    assert outcome.correct and outcome.kind == CORRECT
    assert outcome.iou == pytest.approx(0.75)


def test_an_iou_of_exactly_one_half_is_correct():
    # truth 10x10, answer 10x5 inside it: 50 / 100 = 0.5
    assert judge([(0, 0, 10, 10)], (0, 0, 10, 5)).correct


def test_an_absent_query_answered_with_a_box_is_a_false_box():
    outcome = judge([], (0, 0, 10, 10))
    assert (outcome.absent, outcome.found, outcome.correct, outcome.kind) == (True, True, False, FALSE_BOX)
    assert judge([], None).correct and judge([], None).kind == CORRECT


def test_a_present_query_not_found_is_a_miss():
    outcome = judge([(0, 0, 10, 10)], None)
    assert (outcome.correct, outcome.kind, outcome.iou) == (False, MISS, None)


def test_the_box_of_another_labelled_object_is_a_wrong_object():
    # truth IoU 0; the object: inter 38*40=1520, union 40*40=1600 -> 0.95 >= 0.5
    outcome = judge([(0, 0, 40, 40)], (52, 0, 90, 40), objects=[(50, 0, 90, 40)])
    assert outcome.wrong_object and not outcome.part and outcome.kind == WRONG_OBJECT
    # Same answer without the object label: just a poor box.
    assert judge([(0, 0, 40, 40)], (52, 0, 90, 40)).kind == POOR_BOX


def test_a_part_inside_the_truth():
    # 20x20 inside an 80x80 truth: IoU 400/6400 = 0.0625, all of it inside
    outcome = judge([(0, 0, 80, 80)], (10, 10, 30, 30))
    assert outcome.part and outcome.kind == PART and outcome.iou == pytest.approx(0.0625)
    # 90% inside is enough: [0,10]x[0,10] against a truth from x=1: 9*10=90 of 100 inside
    assert judge([(1, 0, 50, 50)], (0, 0, 10, 10)).part
    # 80% inside is not: truth from x=2 -> 8*10 = 80 of 100
    assert not judge([(2, 0, 50, 50)], (0, 0, 10, 10)).part
    # A correct answer is never a part, however inside it is: 45x45 in 50x50 -> IoU 2025/2500 = 0.81
    assert not judge([(0, 0, 50, 50)], (0, 0, 45, 45)).part


def test_rates_over_a_hand_counted_set():
    outcomes = [
        judge([(0, 0, 10, 10)], (0, 0, 10, 10), mask_iou=0.5),  # correct, IoU 1
        judge([(0, 0, 10, 10)], (0, 0, 10, 5)),  # correct, IoU 0.5
        judge([(0, 0, 40, 40)], (52, 0, 90, 40), objects=[(50, 0, 90, 40)]),  # wrong object, IoU 0
        judge([(0, 0, 80, 80)], (10, 10, 30, 30)),  # part, IoU 0.0625
        judge([(0, 0, 10, 10)], None),  # miss
        judge([], (0, 0, 10, 10)),  # false box
        judge([], None),  # correct not found
    ]
    m = summarize(outcomes)
    assert (m.queries, m.present, m.absent) == (7, 5, 2)
    assert (m.accuracy.hits, m.accuracy.total) == (3, 7)  # two correct boxes + one correct "not found"
    assert m.mean_iou.value == pytest.approx((1 + 0.5 + 0 + 0.0625) / 4) and m.mean_iou.count == 4
    assert m.mean_mask_iou.value == pytest.approx(0.5) and m.mean_mask_iou.count == 1
    assert m.false_box_rate.value == pytest.approx(1 / 2)
    assert m.not_found_precision.value == pytest.approx(1 / 2)  # not-found answers: the miss and the absent one
    assert m.not_found_recall.value == pytest.approx(1 / 2)
    assert m.wrong_object_rate.value == pytest.approx(1 / 5)
    assert m.part_rate.value == pytest.approx(1 / 5)


def test_rates_over_nothing_are_none_not_zero():
    m = summarize([judge([(0, 0, 10, 10)], (0, 0, 10, 10))])
    assert m.false_box_rate.value is None and m.not_found_precision.value is None
    assert m.mean_mask_iou.value is None
    assert m.accuracy.value == 1.0


def test_latency_percentiles_interpolate():
    lat = latency([40.0, 10.0, 30.0, 20.0])
    assert lat.p50 == pytest.approx(25.0)  # between 20 and 30
    assert lat.p95 == pytest.approx(38.5)  # position 0.95 * 3 = 2.85: 30 + 0.85 * 10
    assert lat.count == 4
    assert latency([]) is None
    stages = stage_latency([{"total": 10.0, "matching": 2.0}, {"total": 30.0}])
    assert stages["total"].p50 == pytest.approx(20.0) and stages["matching"].count == 1
