"""A contact sheet of the worst answers: one tile per case, truth boxes green, the answer red, and the command,
mode, verdict and score written under the frame."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from promptbox.evaluation.dataset import Dataset
from promptbox.evaluation.metrics import SEVERITY
from promptbox.evaluation.runner import QueryResult

TRUTH, ANSWER = (0, 255, 0), (255, 0, 0)  # RGB; pure colours, so a reader (or a test) can tell them apart
OTHER = (255, 200, 0)  # the frame's other labelled objects, thin: what a wrong-object answer picked
TILE_WIDTH, IMAGE_HEIGHT, COLUMNS, CASES = 320, 240, 4, 16
_FONT, _SCALE, _LINE = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 17
_TEXT_LINES = 4  # command; mode, verdict, score; image and line; weight marks
TILE_HEIGHT = IMAGE_HEIGHT + _TEXT_LINES * _LINE + 6


@dataclass(frozen=True)
class Sheet:
    path: Path
    cases: tuple[QueryResult, ...]
    width: int
    height: int


def worst_cases(results: Sequence[QueryResult], count: int = CASES) -> list[QueryResult]:
    """Wrong answers first (false boxes and wrong objects, the confident ones first), then misses, then the
    lowest IoU; correct "not found" answers come last, having nothing to show."""

    def badness(result: QueryResult) -> tuple[float, ...]:
        outcome = result.outcome
        severity = SEVERITY[outcome.kind]
        if severity <= 1:
            return (severity, -result.score)
        return (severity, outcome.iou if outcome.iou is not None else 2.0, -result.score)

    return sorted(results, key=badness)[:count]


def contact_sheet(
    dataset: Dataset, cases: Sequence[QueryResult], columns: int = COLUMNS, marks: str = ""
) -> np.ndarray:
    """The tiles on a grid of `columns` x ceil(len / columns), as one RGB image. `marks` (e.g. "[RANDOM WEIGHTS]")
    is written on every tile, so a cropped tile still says what made it."""
    rows = max(1, math.ceil(len(cases) / columns))
    sheet = np.zeros((rows * TILE_HEIGHT, columns * TILE_WIDTH, 3), np.uint8)
    images: dict[str, np.ndarray] = {}
    for index, case in enumerate(cases):
        if case.query.image not in images:
            images[case.query.image] = dataset.load_image(case.query.image)
        row, column = divmod(index, columns)
        top, left = row * TILE_HEIGHT, column * TILE_WIDTH
        sheet[top : top + TILE_HEIGHT, left : left + TILE_WIDTH] = _tile(images[case.query.image], case, marks)
    return sheet


def write_sheet(
    path: str | Path, dataset: Dataset, results: Sequence[QueryResult], count: int = CASES, marks: str = ""
) -> Sheet:
    """Draw the `count` worst cases and write them as a PNG."""
    path = Path(path)
    cases = worst_cases(results, count)
    sheet = contact_sheet(dataset, cases, marks=marks)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"--sheet {str(path)!r}: could not write the image; accepted: a writable .png path")
    return Sheet(path, tuple(cases), sheet.shape[1], sheet.shape[0])


def _tile(image: np.ndarray, case: QueryResult, marks: str) -> np.ndarray:
    tile = np.zeros((TILE_HEIGHT, TILE_WIDTH, 3), np.uint8)
    height, width = image.shape[:2]
    scale = min(TILE_WIDTH / width, IMAGE_HEIGHT / height)
    shown = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    left, top = (TILE_WIDTH - shown.shape[1]) // 2, (IMAGE_HEIGHT - shown.shape[0]) // 2
    tile[top : top + shown.shape[0], left : left + shown.shape[1]] = shown

    def rectangle(box: tuple[float, ...], color: tuple[int, int, int], thickness: int) -> None:
        # Pixel edges -> the last pixel inside, on the scaled frame.
        x0, y0 = round(left + box[0] * scale), round(top + box[1] * scale)
        x1, y1 = round(left + box[2] * scale) - 1, round(top + box[3] * scale) - 1
        cv2.rectangle(tile, (x0, y0), (max(x0, x1), max(y0, y1)), color, thickness)

    for box in case.query.objects:
        rectangle(box, OTHER, 1)
    # Truth wider than the answer, so a perfect answer still shows a green rim around the red.
    for box in case.query.boxes:
        rectangle(box, TRUTH, 5)
    if case.answer is not None:
        rectangle(case.answer, ANSWER, 2)

    outcome = case.outcome
    answer = f"score {case.score:.2f}" if case.answer is not None else f"not found (best {case.score:.2f})"
    iou = f" IoU {outcome.iou:.2f}" if outcome.iou is not None else ""
    texts = (
        case.query.command,
        f"{case.mode}: {outcome.kind}, {answer}{iou}",
        f"{case.query.image} (line {case.query.line})",
    )
    # The marks get their own line under the frame: a banner on the frame would hide boxes.
    for number, text in enumerate(texts, start=1):
        cv2.putText(tile, _fit(text), (4, IMAGE_HEIGHT + number * _LINE), _FONT, _SCALE, (255, 255, 255), 1,
                    cv2.LINE_AA)
    if marks:
        cv2.putText(tile, _fit(marks), (4, IMAGE_HEIGHT + _TEXT_LINES * _LINE), _FONT, _SCALE, (255, 80, 80), 1,
                    cv2.LINE_AA)
    tile[:, -1] = tile[-1, :] = 64  # a thin grey seam between tiles
    return tile


def _fit(text: str, width: int = TILE_WIDTH - 8) -> str:
    if cv2.getTextSize(text, _FONT, _SCALE, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "...", _FONT, _SCALE, 1)[0][0] > width:
        text = text[:-1]
    return text + "..."
