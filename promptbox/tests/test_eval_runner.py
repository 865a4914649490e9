"""The runner and the report with an oracle locator on a hand-labelled set: every number is counted by hand."""

from __future__ import annotations

import pytest
from eval_support import HAND, hand_oracle, write_hand_dataset

from promptbox.evaluation.dataset import load_dataset
from promptbox.evaluation.report import build_report, format_table, report_dict
from promptbox.evaluation.runner import run_eval


@pytest.fixture
def dataset(tmp_path):
    return load_dataset(write_hand_dataset(tmp_path / "hand"))


def test_each_frame_is_prepared_once_for_all_commands_and_modes(dataset):
    oracle = hand_oracle()
    run = run_eval(oracle, dataset, ["exact", "fast"])
    # 2 frames (a.png: 4 commands, b.png: 4 commands), 2 modes: 16 locate calls but 2 embeddings.
    assert [f.first_pixel for f in oracle.prepared] == [200, 150]
    assert len(oracle.located) == 16 and len(run.results) == 16
    assert len(run.frame_embedding_ms) == 2
    # Every locate got the embedding of its own frame.
    by_command = {command: index for index, (command, *_) in enumerate(HAND)}
    for _, command, frame in oracle.located:
        assert frame is oracle.prepared[0 if by_command[command] < 4 else 1]
    assert [mode for mode, *_ in oracle.located[:8]] == ["exact"] * 4 + ["fast"] * 4  # frame a, both modes


def test_upstream_gets_no_frame_and_alone_needs_no_embedding(dataset):
    oracle = hand_oracle()
    run_eval(oracle, dataset, ["upstream"])
    assert oracle.prepared == []
    assert all(frame is None for _, _, frame in oracle.located)


def test_metrics_per_mode_and_tag(dataset):
    report = build_report(run_eval(hand_oracle(), dataset, ["exact", "fast"]))
    assert report.tags == ("all", "absent", "class", "multi")
    exact = report.per_mode["exact"]
    m = exact["all"].metrics
    # correct: mug, cup (second box), bowl and lid (absent, not found) -> 4 of 8
    assert (m.accuracy.hits, m.accuracy.total) == (4, 8)
    # found answers on present queries: mug 1.0, cup 0.75, spoon 0.0, plate 0.0625
    assert m.mean_iou.value == pytest.approx((1.0 + 0.75 + 0.0 + 0.0625) / 4)
    assert m.mean_mask_iou.value == pytest.approx(0.5)  # the mug: 800 / 1600
    assert m.false_box_rate.value == pytest.approx(1 / 3)  # knife of knife, bowl, lid
    assert m.not_found_precision.value == pytest.approx(2 / 3)  # not found: fork (present), bowl, lid
    assert m.not_found_recall.value == pytest.approx(2 / 3)  # bowl, lid of 3 absent
    assert m.wrong_object_rate.value == pytest.approx(1 / 5)  # spoon of 5 present
    assert m.part_rate.value == pytest.approx(1 / 5)  # plate of 5 present

    cls = exact["class"].metrics  # mug, cup, spoon, plate, fork
    assert (cls.accuracy.hits, cls.accuracy.total) == (2, 5)
    assert cls.false_box_rate.value is None  # no absent query in the tag
    assert cls.not_found_precision.value == 0.0  # its one not-found answer (fork) was present
    multi = exact["multi"].metrics  # the cup only
    assert (multi.accuracy.hits, multi.accuracy.total) == (1, 1)
    absent = exact["absent"].metrics  # knife (false box), bowl, lid
    assert (absent.accuracy.hits, absent.accuracy.total) == (2, 3)
    assert absent.not_found_precision.value == 1.0

    # "fast" answers every query right in the oracle: the modes are kept apart.
    fast = report.per_mode["fast"]["all"].metrics
    assert (fast.accuracy.hits, fast.accuracy.total) == (8, 8)
    assert fast.false_box_rate.value == 0.0 and fast.wrong_object_rate.value == 0.0

    # total ms of query i is 10*i: 10..80 -> p50 (40+50)/2 = 45, p95 at 0.95*7 = 6.65: 70 + 0.65*10 = 76.5
    total = exact["all"].latency_ms["total"]
    assert total.p50 == pytest.approx(45.0) and total.p95 == pytest.approx(76.5)
    # absent tag: knife 60, bowl 70, lid 80 -> p50 70
    assert exact["absent"].latency_ms["total"].p50 == pytest.approx(70.0)


def test_the_table_puts_modes_side_by_side_and_marks_random_weights(dataset):
    oracle = hand_oracle(random_weights=True)
    oracle.weights_tag = "[SYNTHETIC-WORLD WEIGHTS]"
    report = build_report(run_eval(oracle, dataset, ["exact", "fast", "upstream"]))
    table = format_table(report)
    lines = table.splitlines()
    assert lines[0].startswith("[RANDOM WEIGHTS] [SYNTHETIC-WORLD WEIGHTS] promptbox eval")
    assert "8 queries on 2 frames" in lines[0]
    assert lines[2] == "weights: oracle, mode exact [RANDOM WEIGHTS: results are meaningless]"
    header = next(i for i, line in enumerate(lines) if line.startswith("tag / metric"))
    assert lines[header - 1].startswith("[RANDOM WEIGHTS] [SYNTHETIC-WORLD WEIGHTS]")
    assert lines[header].split()[-3:] == ["exact", "fast", "upstream"]
    accuracy = next(line for line in lines if line.strip().startswith("accuracy"))
    assert accuracy.split()[1:] == ["0.500", "4/8", "1.000", "8/8", "1.000", "8/8"]
    # The table itself fits a 120-column terminal (the dataset path and describe() lines are as long as they are).
    assert max(len(line) for line in lines[header - 1 :]) <= 120


def test_a_weights_tag_equal_to_the_random_one_is_written_once(dataset):
    oracle = hand_oracle(random_weights=True)
    oracle.weights_tag = "[RANDOM WEIGHTS]"  # what a real Locator with random weights carries
    table = format_table(build_report(run_eval(oracle, dataset, ["exact"])))
    assert table.splitlines()[0].startswith("[RANDOM WEIGHTS] promptbox eval")


def test_the_json_has_the_same_numbers(dataset):
    report = build_report(run_eval(hand_oracle(), dataset, ["exact", "fast"]))
    payload = report_dict(report)
    assert payload["queries"] == 8 and payload["frames"] == 2 and payload["random_weights"] is False
    exact = payload["modes"]["exact"]
    assert exact["all"]["accuracy"] == {"value": 0.5, "hits": 4, "total": 8}
    assert exact["absent"]["false_box_rate"]["value"] == pytest.approx(1 / 3)
    assert exact["all"]["latency_ms"]["total"]["p50"] == pytest.approx(45.0)
    assert payload["frame_embedding_ms"]["count"] == 2


def test_fast_modes_fallbacks_are_counted_in_the_table_and_the_json(dataset):
    oracle = hand_oracle()
    fell_back = [command for command, *_ in HAND][:3]
    for command in fell_back:  # the Locator times "fallback proposing" only when fast mode fell back to the grid
        oracle.timings[command] = {**oracle.timings[command], "fallback proposing": 5.0}
    report = build_report(run_eval(oracle, dataset, ["exact", "fast"]))
    (row,) = [line for line in format_table(report).splitlines() if "fell back to the grid" in line]
    assert row.split()[-3:] == ["3", "of", "8"]  # fast's cell; exact's is "-"
    assert "-" in row.split()
    assert report_dict(report)["modes"]["fast"]["all"]["fallbacks"] == 3
