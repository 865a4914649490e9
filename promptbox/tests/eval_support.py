"""Helpers of the test_eval_* files: an oracle locator answering from a table, and a hand-labelled dataset."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from promptbox.detection import Detection, NotFound

Box = tuple[float, float, float, float]
# (image, command, mode) -> the answer box, or None for "not found"
AnswerFn = Callable[[np.ndarray, str, str], "Box | None"]


class Frame:
    """What the oracle's `prepare` returns: which image it was made for."""

    def __init__(self, shape: tuple[int, ...], first_pixel: int) -> None:
        self.shape, self.first_pixel = shape, first_pixel


class Oracle:
    """A Locator stand-in: `prepare`/`locate`/`describe`/`with_mode`, answers from `answer(image, command, mode)`.
    Calls are recorded in lists shared with every `with_mode` view, like the real Locator's shared caches."""

    def __init__(self, answer: AnswerFn, *, mode: str = "exact", random_weights: bool = False,
                 masks: dict[str, np.ndarray] | None = None, timings: dict[str, dict[str, float]] | None = None):
        self.answer, self.mode, self.random_weights = answer, mode, random_weights
        self.masks, self.timings = masks or {}, timings or {}
        self.prepared: list[Frame] = []
        self.located: list[tuple[str, str, Frame | None]] = []

    def describe(self) -> str:
        mark = " [RANDOM WEIGHTS: results are meaningless]" if self.random_weights else ""
        return f"oracle, mode {self.mode}{mark}"

    def with_mode(self, mode: str) -> Oracle:
        twin = copy.copy(self)  # shallow: the call lists stay shared
        twin.mode = mode
        return twin

    def prepare(self, image: np.ndarray) -> Frame:
        frame = Frame(image.shape, int(image[0, 0, 0]))
        self.prepared.append(frame)
        return frame

    def locate(self, image: np.ndarray, command: str, *, min_score: float | None = None,
               frame: Frame | None = None) -> Detection | NotFound:
        self.located.append((self.mode, command, frame))
        box = self.answer(image, command, self.mode)
        timings = dict(self.timings.get(command, {"total": 1.0}))
        if box is None:
            return NotFound(command, "oracle: absent", timings_ms=timings, random_weights=self.random_weights)
        return Detection(command, tuple(float(v) for v in box), 0.9, self.masks.get(command), timings_ms=timings,
                         random_weights=self.random_weights)


def write_image(path: Path, width: int, height: int, value: int) -> None:
    """A grey frame whose first pixel is `value`, so a test can tell frames apart; no pure red or green in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value, np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = (90, 60, 140)  # something to look at
    cv2.imwrite(str(path), image)


def write_labels(root: Path, records: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


# The hand-labelled set the metric tests compute by hand: frame a.png holds q1-q4, b.png q5-q8 (100x100 each).
# Each entry: (command, acceptable boxes, objects, tags, the oracle's answer in "exact" mode).
HAND = [
    ("take the mug", [[10, 10, 50, 50]], [], ["class"], (10, 10, 50, 50)),  # identical: IoU 1, correct
    # two acceptable boxes; the answer matches the SECOND: inter 40*30=1200, union 1600 -> IoU 0.75, correct
    ("take the cup", [[0, 0, 20, 20], [60, 60, 100, 100]], [], ["class", "multi"], (60, 60, 100, 90)),
    # another labelled object: IoU with truth 0; with the object inter 38*40=1520, union 1600 -> 0.95: wrong object
    ("take the spoon", [[0, 0, 40, 40]], [[50, 0, 90, 40]], ["class"], (52, 0, 90, 40)),
    # a part inside the truth: IoU 20*20/(80*80) = 400/6400 = 0.0625, 100% inside -> part of object
    ("take the plate", [[0, 0, 80, 80]], [], ["class"], (10, 10, 30, 30)),
    ("take the fork", [[0, 0, 10, 10]], [], ["class"], None),  # present, not found: a miss
    ("take the knife", [], [], ["absent"], (0, 0, 10, 10)),  # absent, answered with a box: false box
    ("take the bowl", [], [], ["absent"], None),  # absent, not found: correct
    ("take the lid", [], [], ["absent"], None),  # absent, not found: correct
]


def write_hand_dataset(root: Path) -> Path:
    write_image(root / "a.png", 100, 100, 200)
    write_image(root / "b.png", 100, 100, 150)
    mask = np.zeros((100, 100), np.uint8)
    mask[10:50, 10:50] = 255  # the mug's truth mask: 40*40 = 1600 pixels
    cv2.imwrite(str(root / "mug_mask.png"), mask)
    records = []
    for index, (command, boxes, objects, tags, _) in enumerate(HAND):
        record = {"image": "a.png" if index < 4 else "b.png", "command": command, "boxes": boxes, "tags": tags,
                  "objects": objects, "scene": "ignored"}
        if command == "take the mug":
            record["mask"] = "mug_mask.png"
        records.append(record)
    return write_labels(root, records)


def hand_oracle(*, random_weights: bool = False) -> Oracle:
    """"exact" answers as in HAND; every other mode answers perfectly (the truth's first box, or not found)."""
    table = {command: (answer, boxes) for command, boxes, _, _, answer in HAND}

    def answer(image: np.ndarray, command: str, mode: str) -> Box | None:
        given, boxes = table[command]
        if mode == "exact":
            return given
        return tuple(boxes[0]) if boxes else None

    mug_mask = np.zeros((100, 100), bool)
    mug_mask[10:50, 10:30] = True  # 800 pixels, all inside the truth's 1600: mask IoU 800/1600 = 0.5
    # total ms of the i-th query is 10*i: 10, 20, ..., 80
    timings = {command: {"total": 10.0 * (i + 1), "matching": 1.0} for i, (command, *_) in enumerate(HAND)}
    return Oracle(answer, random_weights=random_weights, masks={"take the mug": mug_mask}, timings=timings)
