"""Relations between the target and an anchor object, in the image plane.

"the pen next to the book": the anchor (the book) is located like any target; then each candidate for the target
is judged by where its box lies relative to the anchor's box. Meanings, for a camera looking down at a table:
- next to / near: the smallest gap between the two boxes (0 when they touch or overlap), any side, and at most the
  length of the smaller object (its box's longer side): no object of its size fits between them. A pair farther
  apart is not "next to", however near it is of those seen (the one meant may not have been proposed);
- far from: the largest gap;
- left of / right of: the candidate's centre is left (right) of the anchor's centre, nearest such first;
- above / below (under): the candidate's centre is higher (lower) in the image, nearest such first;
- behind / in front of: higher (lower) in the image, as for a camera looking forward and down;
- on / in: the candidate's box lies mostly inside the anchor's box (most inside first).
"between" needs two anchors and is not resolved: the caller says so.
"""

from __future__ import annotations

import numpy as np

# A candidate is "on"/"in" the anchor when this much of its box lies inside the anchor's box.
INSIDE_FRACTION = 0.6
RESOLVED = ("next to", "near", "far from", "left of", "right of", "above", "under", "behind", "in front of", "on",
            "in")


def gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two xyxy boxes: 0 when they touch or overlap."""
    dx = max(0.0, float(max(a[0], b[0]) - min(a[2], b[2])))
    dy = max(0.0, float(max(a[1], b[1]) - min(a[3], b[3])))
    return float(np.hypot(dx, dy))


def _centre(box: np.ndarray) -> tuple[float, float]:
    return (float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2)


def _inside(inner: np.ndarray, outer: np.ndarray) -> float:
    w = max(0.0, float(min(inner[2], outer[2]) - max(inner[0], outer[0])))
    h = max(0.0, float(min(inner[3], outer[3]) - max(inner[1], outer[1])))
    area = float((inner[2] - inner[0]) * (inner[3] - inner[1]))
    return w * h / area if area > 0 else 0.0


def fit(relation: str, candidate: np.ndarray, anchor: np.ndarray) -> float | None:
    """How well `candidate` (xyxy) stands in `relation` to `anchor`: lower is better; None when it doesn't hold."""
    if relation not in RESOLVED:
        raise ValueError(f"relation={relation!r} is not resolved geometrically; accepted: {', '.join(RESOLVED)}")
    cx, cy = _centre(candidate)
    ax, ay = _centre(anchor)
    distance = gap(candidate, anchor)
    if relation in ("next to", "near"):
        smaller = min((candidate, anchor), key=lambda b: float((b[2] - b[0]) * (b[3] - b[1])))
        return distance if distance <= float(max(smaller[2] - smaller[0], smaller[3] - smaller[1])) else None
    if relation == "far from":
        return -distance
    if relation in ("on", "in"):
        inside = _inside(candidate, anchor)
        return -inside if inside >= INSIDE_FRACTION else None
    holds = {
        "left of": cx < ax,
        "right of": cx > ax,
        "above": cy < ay,
        "behind": cy < ay,
        "under": cy > ay,
        "in front of": cy > ay,
    }[relation]
    return distance if holds else None
