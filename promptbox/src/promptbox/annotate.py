"""Draw a locate result on the frame, for `--out`, the demo and the ROS debug image."""

from __future__ import annotations

import cv2
import numpy as np

from promptbox.detection import Detection, NotFound, weights_tag_of

_FOUND = (0, 220, 0)
_ALTERNATIVE = (255, 190, 0)
_MISSING = (230, 40, 40)


def draw(image_rgb: np.ndarray, result: Detection | NotFound, *, show_mask: bool = True) -> np.ndarray:
    """A copy of the RGB frame with the box, phrase and score; alternatives thin, the answer thick."""
    canvas = np.ascontiguousarray(image_rgb.copy())
    thickness = max(2, round(max(canvas.shape[:2]) / 320))
    for alt in result.alternatives:
        _box(canvas, alt.box_xyxy, _ALTERNATIVE, 1)
    if isinstance(result, Detection):
        if show_mask and result.mask is not None and result.mask.shape == canvas.shape[:2]:
            tint = canvas[result.mask].astype(np.float32) * 0.6 + np.array(_FOUND, np.float32) * 0.4
            canvas[result.mask] = tint.astype(np.uint8)
        _box(canvas, result.box_xyxy, _FOUND, thickness)
        label = f"{result.phrase} {result.score:.2f}"
        _label(canvas, label, result.box_xyxy, _FOUND)
    else:
        if result.best is not None:
            _box(canvas, result.best.box_xyxy, _MISSING, thickness)
            _label(canvas, f"not found: {result.phrase} {result.best.score:.2f}", result.best.box_xyxy, _MISSING)
        else:
            _label(canvas, f"not found: {result.phrase}", (0, 0, 0, 0), _MISSING)
    tag = weights_tag_of(result)
    if tag:
        # Outputs made with random-init or synthetic-world models must never pass for real ones.
        _label(canvas, tag.replace("[", "").replace("]", ""), (0, canvas.shape[0] - 1, 0, 0), _MISSING)
    return canvas


def _box(canvas: np.ndarray, box: tuple[float, ...], color: tuple[int, int, int], thickness: int) -> None:
    x0, y0, x1, y1 = (round(v) for v in box)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)


def _label(canvas: np.ndarray, text: str, box: tuple[float, ...], color: tuple[int, int, int]) -> None:
    scale = max(0.4, max(canvas.shape[:2]) / 1000)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = int(min(max(box[0], 0), max(canvas.shape[1] - w, 0)))
    y = int(min(max(box[1] - 4, h + 2), canvas.shape[0] - base - 1))
    cv2.rectangle(canvas, (x, y - h - 2), (x + w, y + base), color, -1)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
