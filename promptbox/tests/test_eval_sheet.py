"""The contact sheet: worst cases first, a PNG of the grid's size with truth (green) and answers (red) drawn."""

from __future__ import annotations

import cv2
import numpy as np
from eval_support import hand_oracle, write_hand_dataset

from promptbox.evaluation.dataset import load_dataset
from promptbox.evaluation.runner import run_eval
from promptbox.evaluation.sheet import ANSWER, TILE_HEIGHT, TILE_WIDTH, TRUTH, worst_cases, write_sheet


def test_worst_cases_come_first(tmp_path):
    run = run_eval(hand_oracle(), load_dataset(write_hand_dataset(tmp_path)), ["exact"])
    kinds = [case.outcome.kind for case in worst_cases(run.results)]
    assert sorted(kinds[:2]) == ["false box", "wrong object"]
    assert kinds[2] == "miss"
    assert kinds[3] == "part"  # IoU 0.0625, the lowest left
    assert kinds[4:] == ["ok"] * 4


def test_the_sheet_is_a_grid_png_with_red_and_green(tmp_path):
    dataset = load_dataset(write_hand_dataset(tmp_path / "hand"))
    run = run_eval(hand_oracle(random_weights=True), dataset, ["exact", "fast"])
    sheet = write_sheet(tmp_path / "out" / "worst.png", dataset, run.results, marks="[RANDOM WEIGHTS]")
    image = cv2.cvtColor(cv2.imread(str(sheet.path)), cv2.COLOR_BGR2RGB)
    assert len(sheet.cases) == 16  # 8 queries x 2 modes
    assert image.shape == (4 * TILE_HEIGHT, 4 * TILE_WIDTH, 3) == (sheet.height, sheet.width, 3)
    assert np.all(image == TRUTH, axis=2).sum() > 100
    assert np.all(image == ANSWER, axis=2).sum() > 100
