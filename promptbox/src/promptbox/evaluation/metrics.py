"""Judging answers against the truth, and the rates over many judgements. Plain data in, plain numbers out: no
torch, no images, so every number here is checked by hand in the tests.

Boxes are (x0, y0, x1, y1) in pixel edges; a box's area is (x1 - x0) * (y1 - y0). 3D points are metres in the
camera optical frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]

CENTROID_CLOSE_M = 0.01  # a 3D centroid this close to the truth counts as on target (the 1 cm)
IOU_CORRECT = 0.5  # the usual detection threshold: a found box counts when it overlaps a truth box this much
INSIDE_PART = 0.9  # an answer this much inside a truth box, but too small for IoU 0.5, is a part of the object

# What went wrong, worst first: the contact sheet shows cases in this order.
FALSE_BOX, WRONG_OBJECT, MISS, PART, POOR_BOX, CORRECT = "false box", "wrong object", "miss", "part", "poor box", "ok"
SEVERITY = {FALSE_BOX: 0, WRONG_OBJECT: 0, MISS: 1, PART: 2, POOR_BOX: 2, CORRECT: 3}


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union; 0 when the union is empty (two zero-area boxes) or the boxes only touch."""
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def inside_fraction(inner: Box, outer: Box) -> float:
    """Share of `inner`'s area that lies inside `outer`; 0 for a zero-area `inner` (it covers nothing)."""
    size = area(inner)
    return intersection(inner, outer) / size if size > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two same-shape boolean masks; 0 when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} and {b.shape}; accepted: masks of the same frame")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


@dataclass(frozen=True)
class PoseJudgement:
    """The 3D side of a found answer on a present query in a frame with depth: whether it got a pose, and for a
    correct answer with a pose and a truth centroid, the distance from the truth in metres (None otherwise)."""

    has_pose: bool
    centroid_error_m: float | None = None


def centroid_error(answer: Box, centroid: Sequence[float], truth: Sequence[Box],
                   truth_centroids: Sequence[Sequence[float]]) -> float:
    """Metres from `centroid` to the truth centroid of the acceptable box `answer` overlaps most (the first on ties)."""
    if len(truth) != len(truth_centroids) or not truth:
        raise ValueError(f"{len(truth)} truth boxes and {len(truth_centroids)} truth centroids; accepted: one "
                         "centroid per box, at least one box")
    best = max(range(len(truth)), key=lambda i: (box_iou(answer, truth[i]), -i))
    return float(np.linalg.norm(np.asarray(centroid, float) - np.asarray(truth_centroids[best], float)))


@dataclass(frozen=True)
class Outcome:
    """One answer judged. `iou` is the best box IoU over the acceptable boxes (None when there is no answer box or
    no truth box); `kind` is one of FALSE_BOX, WRONG_OBJECT, MISS, PART, POOR_BOX, CORRECT."""

    absent: bool
    found: bool
    correct: bool
    iou: float | None
    kind: str
    wrong_object: bool = False
    part: bool = False
    mask_iou: float | None = None
    pose: PoseJudgement | None = None  # None: no depth for the frame, or no box answered on a present query


def judge(
    truth: Sequence[Box],
    answer: Box | None,
    objects: Sequence[Box] = (),
    mask_iou: float | None = None,
    pose: PoseJudgement | None = None,
) -> Outcome:
    """Judge one answer (None = not found) against the acceptable `truth` boxes ([] = absent) and the other
    labelled `objects` of the frame. `pose` is kept only for a found answer on a present query; a centroid error
    only for a correct one (the 3D error of the wrong object says nothing about 3D)."""
    absent, found = not truth, answer is not None
    if absent:
        return Outcome(True, found, not found, None, FALSE_BOX if found else CORRECT)
    if answer is None:
        return Outcome(False, False, False, None, MISS)
    iou = max(box_iou(answer, box) for box in truth)
    if iou >= IOU_CORRECT:
        return Outcome(False, True, True, iou, CORRECT, mask_iou=mask_iou, pose=pose)
    wrong_object = any(box_iou(answer, other) >= IOU_CORRECT for other in objects)
    part = any(inside_fraction(answer, box) >= INSIDE_PART for box in truth)
    kind = WRONG_OBJECT if wrong_object else PART if part else POOR_BOX
    if pose is not None and pose.centroid_error_m is not None:
        pose = PoseJudgement(pose.has_pose)
    return Outcome(False, True, False, iou, kind, wrong_object, part, mask_iou, pose)


@dataclass(frozen=True)
class Counted:
    """A rate with what it was computed from, so the report can say 3/8 and not only 0.375. `value` is None when
    `total` is 0 (a rate over nothing is not 0)."""

    hits: int
    total: int

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None


@dataclass(frozen=True)
class Mean:
    value: float | None
    count: int


@dataclass(frozen=True)
class Metrics:
    queries: int
    present: int
    absent: int
    accuracy: Counted
    mean_iou: Mean  # found answers on present queries
    mean_mask_iou: Mean  # found answers with a mask on present queries with a truth mask
    false_box_rate: Counted  # absent queries answered with a box
    not_found_precision: Counted  # not-found answers whose query was absent
    not_found_recall: Counted  # absent queries answered not found
    wrong_object_rate: Counted  # present queries answered with another labelled object
    part_rate: Counted  # present queries answered with a part of the object
    # 3D, over present queries in frames with depth; Counted(0, 0) and Mean(None, 0) without depth.
    pose_rate: Counted = Counted(0, 0)  # found answers that got a 3D pose
    centroid_error_m: Mean = Mean(None, 0)  # correct answers with a pose: metres from the truth centroid
    centroid_close_rate: Counted = Counted(0, 0)  # of those, within CENTROID_CLOSE_M


def summarize(outcomes: Sequence[Outcome]) -> Metrics:
    present = [o for o in outcomes if not o.absent]
    absent = [o for o in outcomes if o.absent]
    not_found = [o for o in outcomes if not o.found]
    ious = [o.iou for o in present if o.found and o.iou is not None]
    mask_ious = [o.mask_iou for o in present if o.found and o.mask_iou is not None]
    poses = [o.pose for o in present if o.found and o.pose is not None]
    errors = [p.centroid_error_m for p in poses if p.centroid_error_m is not None]
    return Metrics(
        queries=len(outcomes),
        present=len(present),
        absent=len(absent),
        accuracy=Counted(sum(o.correct for o in outcomes), len(outcomes)),
        mean_iou=_mean(ious),
        mean_mask_iou=_mean(mask_ious),
        false_box_rate=Counted(sum(o.found for o in absent), len(absent)),
        not_found_precision=Counted(sum(o.absent for o in not_found), len(not_found)),
        not_found_recall=Counted(sum(not o.found for o in absent), len(absent)),
        wrong_object_rate=Counted(sum(o.wrong_object for o in present), len(present)),
        part_rate=Counted(sum(o.part for o in present), len(present)),
        pose_rate=Counted(sum(p.has_pose for p in poses), len(poses)),
        centroid_error_m=_mean(errors),
        centroid_close_rate=Counted(sum(e <= CENTROID_CLOSE_M for e in errors), len(errors)),
    )


def _mean(values: Sequence[float]) -> Mean:
    return Mean(float(np.mean(values)) if values else None, len(values))


@dataclass(frozen=True)
class Latency:
    p50: float
    p95: float
    count: int


def latency(samples: Iterable[float]) -> Latency | None:
    """p50 and p95 with linear interpolation between samples (numpy's default); None for no samples."""
    values = np.asarray(list(samples), dtype=float)
    if values.size == 0:
        return None
    return Latency(float(np.percentile(values, 50)), float(np.percentile(values, 95)), int(values.size))


def stage_latency(timings: Iterable[Mapping[str, float]]) -> dict[str, Latency]:
    """Per stage key (embedding, proposing, ..., total), the latency over every timings dict that has it."""
    samples: dict[str, list[float]] = {}
    for record in timings:
        for stage, ms in record.items():
            samples.setdefault(stage, []).append(ms)
    return {stage: lat for stage, values in samples.items() if (lat := latency(values)) is not None}
