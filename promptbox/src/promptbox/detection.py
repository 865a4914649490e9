"""What a locate call returns: a Detection, or NotFound with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RANDOM_WEIGHTS_TAG = "[RANDOM WEIGHTS]"  # leads every text answer made with random-init models


@dataclass(frozen=True)
class Candidate:
    """One scored region: a box in source-pixel xyxy and its calibrated score."""

    box_xyxy: tuple[float, float, float, float]
    score: float
    raw_similarity: float = 0.0


@dataclass
class Detection:
    """The chosen object. `box_xyxy` is in source-pixel edges (x1, y1 exclusive: a full frame is (0, 0, W, H));
    `mask` is HxW bool in source pixels."""

    phrase: str
    box_xyxy: tuple[float, float, float, float]
    score: float
    mask: np.ndarray | None
    alternatives: list[Candidate] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    random_weights: bool = False
    weights_tag: str = ""  # "[RANDOM WEIGHTS]", "[SYNTHETIC-WORLD WEIGHTS]", or "" for released weights
    notes: list[str] = field(default_factory=list)  # what of the command was not used, and corrections made

    found: bool = True

    def to_dict(self) -> dict:
        x0, y0, x1, y1 = self.box_xyxy
        return {
            "found": True,
            "phrase": self.phrase,
            "box_xyxy": [round(v, 1) for v in self.box_xyxy],
            "box_xywh": [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)],
            "score": round(self.score, 4),
            "alternatives": [
                {"box_xyxy": [round(v, 1) for v in c.box_xyxy], "score": round(c.score, 4)}
                for c in self.alternatives
            ],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "random_weights": self.random_weights,
            "weights_tag": weights_tag_of(self),
            "notes": list(self.notes),
        }


@dataclass
class NotFound:
    """No region passed `min_score`. `best` is the strongest candidate, if any, so callers can see how close it was."""

    phrase: str
    reason: str
    best: Candidate | None = None
    alternatives: list[Candidate] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    random_weights: bool = False
    weights_tag: str = ""

    found: bool = False

    def to_dict(self) -> dict:
        return {
            "found": False,
            "phrase": self.phrase,
            "reason": self.reason,
            "best": None
            if self.best is None
            else {"box_xyxy": [round(v, 1) for v in self.best.box_xyxy], "score": round(self.best.score, 4)},
            "alternatives": [
                {"box_xyxy": [round(v, 1) for v in c.box_xyxy], "score": round(c.score, 4)}
                for c in self.alternatives
            ],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "random_weights": self.random_weights,
            "weights_tag": weights_tag_of(self),
        }


def summary(result: Detection | NotFound, seconds: float | None = None) -> str:
    """One line for people and logs: the box and score, or why nothing was found; tagged when weights are random.

    `seconds` defaults to the locate call's own total; callers that also waited (for a frame, a queue) pass theirs.
    """
    if seconds is None:
        seconds = result.timings_ms.get("total", 0.0) / 1000.0
    if isinstance(result, Detection):
        x0, y0, x1, y1 = result.box_xyxy
        line = (
            f"found '{result.phrase}' at x0={x0:.0f} y0={y0:.0f} x1={x1:.0f} y1={y1:.0f} "
            f"(score {result.score:.2f}) in {seconds:.2f} s"
        )
        if result.notes:
            line += "; " + "; ".join(result.notes)
    else:
        line = f"not found '{result.phrase}': {result.reason} ({seconds:.2f} s)"
    tag = weights_tag_of(result)
    return f"{tag} {line}" if tag else line


def weights_tag_of(result: Detection | NotFound) -> str:
    """What leads an answer made with anything but the released weights ("" for those)."""
    return result.weights_tag or (RANDOM_WEIGHTS_TAG if result.random_weights else "")
