"""Pick one Detection from scored mask proposals: calibrate raw CLIP similarities, prefer whole objects over their
parts, apply the command's spatial qualifier, and answer NotFound when nothing is confident enough.

Pure numpy, so it is tested with hand-drawn masks and known scores. `target.relation` and `target.anchor` are not
used here yet: selection looks only at the target phrase's scores and `target.spatial`.
"""

from __future__ import annotations

import numpy as np

from promptbox.command import Target
from promptbox.detection import Candidate, Detection, NotFound

# Generic phrases the target competes with in calibrate(): a crop that matches "a table" as well as "red mug" is not
# a red mug. matching.py encodes these with the same prompt ensemble as the target.
BACKGROUND_PHRASES: tuple[str, ...] = (
    "background",
    "a table",
    "a wall",
    "the floor",
    "an empty surface",
    "a blurry photo",
    "a shadow",
    "a texture",
)

# A region is a part of another when the other covers nearly all of it and is clearly bigger.
CONTAIN_FRACTION = 0.9
CONTAIN_GROWTH = 1.2
DUPLICATE_IOU = 0.7


def calibrate(similarity: np.ndarray, background_similarity: np.ndarray, logit_scale: float = 100.0) -> np.ndarray:
    """(N,) confidence in [0, 1]: the target's share of a softmax over [target, backgrounds] at `logit_scale`.

    Raw cosine similarities sit in a narrow band (about 0.15-0.35 for CLIP) whose level depends on the phrase, so a
    fixed threshold on them means nothing; the share against background phrases does.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    bg = np.asarray(background_similarity, dtype=np.float64)
    if sim.ndim != 1:
        raise ValueError(f"similarity has shape {sim.shape}; accepted: (N,)")
    if bg.ndim != 2 or bg.shape[0] != sim.shape[0] or bg.shape[1] == 0:
        raise ValueError(
            f"background_similarity has shape {bg.shape}; accepted: (N, B) with N={sim.shape[0]} and B >= 1 "
            f"(one column per background phrase)"
        )
    logits = logit_scale * np.concatenate([sim[:, None], bg], axis=1)
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    weights = np.exp(logits)
    return weights[:, 0] / weights.sum(axis=1)


def select(
    masks: np.ndarray,
    boxes_xyxy: np.ndarray,
    similarity: np.ndarray,
    confidence: np.ndarray,
    target: Target,
    *,
    min_score: float,
    part_margin: float = 0.02,
    top_k: int = 5,
) -> Detection | NotFound:
    """Choose one region for `target`.

    masks (N,H,W) bool and boxes_xyxy (N,4) are in source pixels; similarity (N,) is raw cosine, confidence (N,) is
    calibrate()'s output. Without a spatial qualifier the best region by similarity is chosen, or the largest region
    containing it that scores within `part_margin` (the whole screwdriver, not its head). With one, the qualifier
    picks among the plausible regions (confidence >= min_score, near-duplicates and parts removed). The chosen
    region must reach `min_score`, else NotFound says how close it came. `alternatives` are the `top_k` other
    regions by confidence.
    """
    masks, boxes, sim, conf = _check(masks, boxes_xyxy, similarity, confidence, part_margin, top_k)
    n = masks.shape[0]
    if n == 0:
        return NotFound(phrase=target.phrase, reason="no mask proposals in the image")

    regions = _Regions(masks)
    chosen = _whole_over_parts(regions, sim, conf, min_score, part_margin)
    if target.spatial is not None:
        plausible = _plausible(regions, boxes, conf, min_score)
        if plausible:
            chosen = _by_spatial(target.spatial, plausible, regions, boxes, conf)

    alternatives = _candidates([i for i in np.argsort(-conf, kind="stable") if i != chosen][:top_k], boxes, sim, conf)
    if conf[chosen] < min_score:
        return NotFound(
            phrase=target.phrase,
            reason=f"best candidate for {target.phrase!r} scored {_below(conf[chosen], min_score)}",
            best=_candidates([chosen], boxes, sim, conf)[0],
            alternatives=alternatives,
        )
    return Detection(
        phrase=target.phrase,
        box_xyxy=_box(boxes[chosen]),
        score=float(conf[chosen]),
        # A copy: a view would keep the whole (N,H,W) proposal stack alive as long as the Detection.
        mask=masks[chosen].copy(),
        alternatives=alternatives,
    )


# --- geometry -----------------------------------------------------------------------------------------------------


class _Regions:
    """Mask areas and containment. Overlaps are counted only for candidates big enough to contain, inside the part's
    bounding box: a full N x N overlap matrix of 720p masks would cost N*N*H*W."""

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks
        # count_nonzero per mask is about 3x faster than a bool sum over the (N, H*W) stack.
        self.area = np.array([np.count_nonzero(m) for m in masks], dtype=np.int64)

    def containers(self, i: int, among: list[int] | np.ndarray | None = None) -> list[int]:
        """Regions (of `among`, default all) that contain region i: |i∩j| >= 0.9|i| and |j| >= 1.2|i|."""
        if self.area[i] == 0:
            return []
        candidates = np.arange(len(self.area)) if among is None else np.asarray(among, dtype=np.int64)
        candidates = candidates[(candidates != i) & (self.area[candidates] >= CONTAIN_GROWTH * self.area[i])]
        if candidates.size == 0:
            return []
        rows = np.flatnonzero(self.masks[i].any(axis=1))
        cols = np.flatnonzero(self.masks[i].any(axis=0))
        ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        inter = (self.masks[candidates, ys, xs] & self.masks[i, ys, xs]).reshape(candidates.size, -1).sum(axis=1)
        return [int(j) for j in candidates[inter >= CONTAIN_FRACTION * self.area[i]]]


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# --- choosing -----------------------------------------------------------------------------------------------------


def _whole_over_parts(regions: _Regions, sim: np.ndarray, conf: np.ndarray, min_score: float, margin: float) -> int:
    """The best region by similarity, or the largest region containing it that scores within `margin` of it.

    CLIP often scores a distinctive part (a screwdriver's head) a hair above the whole object, but the robot must
    grasp the whole. Containers are compared with the original best's similarity, so a chain of containers cannot
    drift downwards step by step; and a container below min_score cannot turn a found part into NotFound.
    """
    best = int(np.argmax(sim))
    close = (sim >= sim[best] - margin) & ((conf >= min_score) | (conf[best] < min_score))
    eligible = regions.containers(best, among=np.flatnonzero(close))
    if not eligible:
        return best
    return max(eligible, key=lambda j: (regions.area[j], sim[j]))


def _plausible(regions: _Regions, boxes: np.ndarray, conf: np.ndarray, min_score: float) -> list[int]:
    """Regions confident enough to be the target, one per object: near-duplicate boxes keep the more confident, and
    a region contained in another plausible one is a part of that object, not a separate object."""
    kept: list[int] = []
    for i in np.argsort(-conf, kind="stable"):
        i = int(i)
        if conf[i] < min_score:
            break
        if kept and _box_iou(boxes[i], boxes[kept]).max() > DUPLICATE_IOU:
            continue
        kept.append(i)
    return [i for i in kept if not regions.containers(i, among=kept)]


def _by_spatial(spatial: str, plausible: list[int], regions: _Regions, boxes: np.ndarray, conf: np.ndarray) -> int:
    """The plausible region that best fits the qualifier; ties go to the more confident region."""
    b = boxes[plausible]
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    height, width = regions.masks.shape[1:]
    keys = {
        "left": cx,
        "right": -cx,
        "top": cy,
        "bottom": -cy,
        "center": np.hypot(cx - width / 2, cy - height / 2),
        "biggest": -regions.area[plausible].astype(np.float64),
        "smallest": regions.area[plausible].astype(np.float64),
        # A tabletop camera looks down and forward: an object's bottom edge lower in the image is nearer the robot.
        "nearest": -b[:, 3],
        "farthest": b[:, 3],
    }
    key = keys[spatial]  # Target has already checked spatial against SPATIAL_WORDS
    order = np.lexsort((-conf[plausible], key))  # last key is primary
    return plausible[int(order[0])]


# --- output -------------------------------------------------------------------------------------------------------


def _box(row: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in row)
    return (x0, y0, x1, y1)


def _candidates(indices: list[int], boxes: np.ndarray, sim: np.ndarray, conf: np.ndarray) -> list[Candidate]:
    return [Candidate(_box(boxes[i]), score=float(conf[i]), raw_similarity=float(sim[i])) for i in indices]


def _below(score: float, min_score: float) -> str:
    """'0.31, below min_score 0.50', with enough decimals that the two numbers never print the same."""
    digits = 2
    while digits < 6 and f"{score:.{digits}f}" == f"{min_score:.{digits}f}":
        digits += 1
    return f"{score:.{digits}f}, below min_score {min_score:.{digits}f}"


def _check(
    masks: np.ndarray,
    boxes: np.ndarray,
    similarity: np.ndarray,
    confidence: np.ndarray,
    part_margin: float,
    top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    masks = np.asarray(masks).astype(bool, copy=False)
    boxes = np.asarray(boxes, dtype=np.float64)
    sim = np.asarray(similarity, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    if masks.ndim != 3:
        raise ValueError(f"masks has shape {masks.shape}; accepted: (N, H, W) bool")
    n = masks.shape[0]
    if n == 0 and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    for name, value, shape in (("boxes_xyxy", boxes, (n, 4)), ("similarity", sim, (n,)), ("confidence", conf, (n,))):
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}; accepted: {shape}, one row per mask")
        if not np.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or infinity; accepted: finite values")
    if part_margin < 0:
        raise ValueError(f"part_margin={part_margin!r} is negative; accepted: 0 or more")
    if top_k < 0:
        raise ValueError(f"top_k={top_k!r} is negative; accepted: 0 or more")
    return masks, boxes, sim, conf
