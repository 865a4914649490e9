"""Pick one Detection from scored mask proposals: calibrated scores against competing names, whole objects over
their parts (or the named part inside its whole), spatial words and relations among the regions that are the target,
and NotFound when nothing is confident enough.

Pure numpy, so it is tested with hand-drawn masks and known scores. One score ranks and gates: the calibrated
confidence (calibrate()), the target phrase's share of a softmax over the phrase, competing object names and
scenery phrases (for a colour phrase, that share for the thing times the colour's share: attributes.py). Raw
cosine is compared only between nested regions of one object (the part margin).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from promptbox import relations, vocabulary
from promptbox.command import Target
from promptbox.detection import Candidate, Detection, NotFound
from promptbox.masks import BoxMasks
from promptbox.regions import Regions

# Generic phrases the target competes with in calibrate(): a crop that matches "a table" as well as "red mug" is not
# a red mug. matching.py encodes these with the same prompt ensemble as the target.
# No articles: the prompt templates ("a photo of a {}.") bring their own.
BACKGROUND_PHRASES: tuple[str, ...] = (
    "background",
    "table",
    "wall",
    "floor",
    "empty surface",
    "blurry photo",
    "shadow",
    "texture",
)


@dataclass(frozen=True)
class PhraseScores:
    """One phrase scored on every region: raw cosine, calibrated confidence, and whether the phrase beats every
    competing name on the region (its top-1 label)."""

    phrase: str
    similarity: np.ndarray  # (N,)
    confidence: np.ndarray  # (N,)
    top1: np.ndarray  # (N,) bool
    rival: tuple[str, ...] = ()  # per region, the competing name that scored highest ((): not known)
    rank: np.ndarray | None = None  # (N,) int, per region how many competing names beat the phrase (None: not known)

DUPLICATE_IOU = 0.7


def calibrate(similarity: np.ndarray, background_similarity: np.ndarray, logit_scale: float = 100.0) -> np.ndarray:
    """(N,) confidence in [0, 1]: the target's share of a softmax over [target, competitors] at `logit_scale`.

    Competitors are other object names and scenery phrases (one column each). Raw cosine similarities sit in a
    narrow band whose level depends on the phrase, so a fixed threshold on them means nothing; the share does: 0.5
    means the target phrase is as likely as every competitor together, so it is at least the top-1 label.
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
    masks: BoxMasks | np.ndarray,
    boxes_xyxy: np.ndarray,
    similarity: np.ndarray,
    confidence: np.ndarray,
    target: Target,
    *,
    min_score: float,
    part_margin: float = 0.02,
    top_k: int = 5,
    is_target: np.ndarray | None = None,
    anchor: PhraseScores | None = None,
    whole: PhraseScores | None = None,
    rival: tuple[str, ...] = (),
    is_group: Callable[[int, int], bool] | None = None,
) -> Detection | NotFound:
    """Choose one region for `target`.

    masks (BoxMasks, or an (N,H,W) bool stack) and boxes_xyxy (N,4) are in source pixels; similarity (N,) is raw
    cosine, confidence (N,) is calibrate()'s output, which ranks the regions and gates the answer. `is_target` (N,)
    marks the regions whose top-1 label is the target (default: confidence >= min_score).
    - Plain: the most confident region, or the largest region containing it whose similarity is within
      `part_margin` and which passes min_score (the whole screwdriver, not its head). `is_group(container, inner)`
      (optional) says whether a region holding a confident target region is that region plus other objects
      (the screwdriver and the banana touching it), not its whole; such a group is set aside, and the choice made
      again without it.
    - A part ("cap of marker", `whole` = the marker's scores): the most confident region inside the best whole;
      its score is the whole's confidence (object names compete with "marker", not with "cap of marker"). With no
      confident whole, a region inside another that is confidently the part phrase itself, said in the notes.
    - A spatial word picks among the plausible regions: target regions at min_score, one per object (a group that
      `is_group` names is no object of its own: the target region inside it is).
    - A relation (`anchor` = the anchor phrase's scores) picks the plausible region that best stands in that
      relation to the best anchor region (one that holds no plausible region); no anchor, or no region in that
      relation, is NotFound saying so.
    A qualifier that cannot be applied is never dropped silently: the answer's notes or reason say so. `rival` (N,
    optional) names each region's strongest competing name; a not-found answer says what its best region reads as
    ("it reads as 'white mug'"), so a user sees why, without a box the model cannot back.
    """
    masks, boxes, sim, conf = _check(masks, boxes_xyxy, similarity, confidence, part_margin, top_k)
    n = len(masks)
    if n == 0:
        return NotFound(phrase=target.phrase, reason="no mask proposals in the image")
    top1 = conf >= min_score if is_target is None else np.asarray(is_target, dtype=bool)
    if top1.shape != (n,):
        raise ValueError(f"is_target has shape {top1.shape}; accepted: ({n},), one flag per mask")

    regions = Regions(masks)
    if is_group is not None:
        is_group = functools.cache(is_group)  # each pair is read once (a crop through CLIP), however often asked
    notes: list[str] = []
    miss = None
    if whole is not None:
        chosen, miss, owner, note = _part_of_whole(regions, conf, whole, target, min_score)
        # The evidence for a part is its whole: object names compete with "marker", not with "cap of marker".
        conf = conf.copy()
        notes.extend([note] if note else [])
        if owner is not None:
            conf[chosen] = whole.confidence[owner]
        elif miss is None:
            notes.append(f"the {whole.phrase!r} was not confidently named; the part was recognised as "
                         f"{target.phrase!r} by itself, inside a larger region")
    else:
        chosen = _whole_over_parts(regions, sim, conf, min_score, part_margin)
        if is_group is not None:
            chosen = _without_groups(regions, sim, conf, min_score, part_margin, chosen, is_group)
    # The candidates a spatial word or a relation chooses among (a group is checked only where they are used).
    compares = target.spatial is not None or target.relation is not None
    plausible = _plausible(regions, boxes, conf, min_score, top1, is_group if compares else None)
    if miss is None and target.relation is not None:
        if anchor is None:
            notes.append(f"relation {target.relation!r} {target.anchor!r} was not applied (not resolved in the image "
                         f"plane; resolved: {', '.join(relations.RESOLVED)})")
        elif plausible:
            def candidates(set_aside: Collection[int]) -> list[int]:
                return _plausible(regions, boxes, conf, min_score, top1, is_group, set_aside)

            chosen, miss = _by_relation(target, anchor, plausible, candidates, regions, boxes, conf, min_score)
    if miss is None and target.spatial is not None and plausible:
        if target.relation is not None and anchor is not None:
            notes.append(f"spatial word {target.spatial!r} was not applied: the relation chose among the candidates")
        else:
            picked = _by_spatial(target, plausible, regions, boxes, conf)
            if picked is None:
                miss = _too_few(target, len(plausible))
            else:
                chosen = picked
                # An object that is probably the target (its top-1 name) but below min_score can still stand first
                # in the order: then the most confident candidates do not settle which one the command means, and
                # answering the next confident one is a wrong object ("the scissors on the left" boxing the right).
                doubtful = _doubtful(regions, boxes, conf, min_score, top1, plausible)
                first = _by_spatial(target, plausible + doubtful, regions, boxes, conf) if doubtful else picked
                if first != picked:
                    chosen = first
                    miss = (f"a region whose top label is {target.phrase!r} but that scored "
                            f"{_below(float(conf[first]), min_score)} comes before the confident ones in the order "
                            f"of {target.spatial!r}, so which {target.phrase!r} is meant is not settled")

    alternatives = _candidates([i for i in np.argsort(-conf, kind="stable") if i != chosen][:top_k], boxes, sim, conf)
    if miss is not None or conf[chosen] < min_score:
        reason = miss or f"best candidate for {target.phrase!r} scored {_below(conf[chosen], min_score)}"
        if miss is None and len(rival) == n and not top1[chosen]:
            reason += f" (it reads as {rival[chosen]!r})"
        return NotFound(
            phrase=target.phrase,
            reason="; ".join([reason, *notes]),
            best=_candidates([chosen], boxes, sim, conf)[0],
            alternatives=alternatives,
        )
    return Detection(
        phrase=target.phrase,
        box_xyxy=_box(boxes[chosen]),
        score=float(conf[chosen]),
        mask=masks.full(chosen),  # the one full-frame mask an answer carries
        alternatives=alternatives,
        notes=notes,
    )


# --- geometry -----------------------------------------------------------------------------------------------------


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


def _whole_over_parts(regions: Regions, sim: np.ndarray, conf: np.ndarray, min_score: float, margin: float,
                      set_aside: np.ndarray | None = None) -> int:
    """The most confident region, or the largest region containing it whose similarity is within `margin` of it;
    regions `set_aside` (bool, N) are neither.

    CLIP often scores a distinctive part (a screwdriver's head) a hair above the whole object, but the robot must
    grasp the whole. Nested regions of one object face the same competitors, so their raw similarities compare
    directly. Containers are compared with the original best, so a chain of containers cannot drift downwards; and
    a container below min_score cannot turn a found part into NotFound.
    """
    usable = np.ones(len(conf), bool) if set_aside is None else ~set_aside
    best = int(np.flatnonzero(usable)[np.argmax(conf[usable])])
    close = (sim >= sim[best] - margin) & ((conf >= min_score) | (conf[best] < min_score)) & usable
    eligible = regions.containers(best, among=np.flatnonzero(close))
    if not eligible:
        return best
    return max(eligible, key=lambda j: (regions.area[j], conf[j]))


def _without_groups(regions: Regions, sim: np.ndarray, conf: np.ndarray, min_score: float, margin: float,
                    chosen: int, is_group: Callable[[int, int], bool]) -> int:
    """`chosen`, unless it holds a confident target region and `is_group` says it is that region plus other
    objects: then the choice is made again without it, until a region passes. A crop of a screwdriver and the
    banana touching it can read as "screwdriver" as strongly as the screwdriver alone, and whole-over-parts would
    prefer the larger region; what the group adds to the screwdriver reads as a banana, what a whole adds to its
    part does not. Each pass sets one region aside, so it ends."""
    set_aside = np.zeros(len(conf), bool)
    while conf[chosen] >= min_score:
        inner = [i for i in _inside(regions, chosen, len(conf)) if conf[i] >= min_score and not set_aside[i]]
        if not inner or not is_group(chosen, max(inner, key=lambda i: conf[i])):
            break
        set_aside[chosen] = True
        chosen = _whole_over_parts(regions, sim, conf, min_score, margin, set_aside)
    return chosen


def _part_of_whole(
    regions: Regions, conf: np.ndarray, whole: PhraseScores, target: Target, min_score: float
) -> tuple[int, str | None, int | None, str | None]:
    """An explicit part ("cap of marker"): the region inside the most confident whole (among regions with regions
    inside them) that scores best for the part phrase. Returns (chosen, reason if not found, the whole's index, a
    note for the answer).

    The body of an object ("the body of the bottle", "the cover of the book") is the object minus its small
    attachments, so when the most confident whole is confidently named and no region inside it was proposed (SAM
    did not split off the body, or box NMS kept one of two masks with the same box), the whole's own region is the
    body, said in the notes. Any other part needs a region of its own: the marker is not its cap.

    When no whole is confidently named, a region that is itself confidently the part phrase (against the object
    names, "marker" among them) and lies inside another region is the part: the whole is then evidenced by the part
    ("the cap of a marker" is a marker's cap). Its whole index is None, and the caller says so in the notes."""
    n = len(conf)
    order = [int(j) for j in np.argsort(-whole.confidence, kind="stable")]
    request = vocabulary.part_request(target.phrase)
    best = order[0]
    if (request is not None and request[0].split()[-1] in vocabulary.BODY_PARTS
            and whole.confidence[best] >= min_score and not _inside(regions, best, n)):
        return best, None, best, (f"no region inside the {whole.phrase!r} was proposed for {request[0]!r}: the "
                                  f"answer is the whole {whole.phrase!r}, of which the {request[0]} is the body")
    # Most confident whole first, stopping at the first with a region inside: not every pair of regions.
    for owner in order:
        inside = _inside(regions, owner, n)
        if inside:
            break
    else:
        owner, inside = None, []
    if owner is not None and whole.confidence[owner] >= min_score:
        return max(inside, key=lambda i: conf[i]), None, owner, None
    parts = [int(i) for i in np.argsort(-conf, kind="stable") if regions.containers(i)]  # inside another region
    if parts and conf[parts[0]] >= min_score:
        return parts[0], None, None, None
    if whole.confidence[best] >= min_score and best != owner:  # the whole is there, nothing was proposed inside
        return best, (f"the {whole.phrase!r} was found ({float(whole.confidence[best]):.2f}) but no region inside "
                      f"it was proposed for {target.phrase!r}"), None, None
    if owner is None:
        return (int(np.argmax(conf)), f"no region inside a {whole.phrase!r} was proposed for {target.phrase!r}",
                None, None)
    reason = (f"the {whole.phrase!r} that {target.phrase!r} belongs to was not found (best "
              f"{_below(float(whole.confidence[owner]), min_score)}), and the best part region scored "
              f"{_below(float(conf[parts[0]]), min_score)} as {target.phrase!r} by itself")
    return max(inside, key=lambda i: conf[i]), reason, owner, None


def _inside(regions: Regions, owner: int, n: int) -> list[int]:
    """The regions that `owner` contains."""
    return [i for i in range(n) if i != owner and owner in regions.containers(i, among=[owner])]


def _plausible(
    regions: Regions, boxes: np.ndarray, conf: np.ndarray, min_score: float, top1: np.ndarray,
    is_group: Callable[[int, int], bool] | None = None, set_aside: Collection[int] = (),
) -> list[int]:
    """Regions that are the target (its top-1 label, at min_score), one per object: near-duplicate boxes keep the
    more confident, and a region contained in another plausible one is a part of that object, unless `is_group`
    says the container is that region plus other objects (the screwdriver and the spoon touching it): then the
    container goes, as in a plain request, and the object stays a candidate of its own. Regions `set_aside` are
    no candidates."""
    kept: list[int] = []
    for i in np.argsort(-conf, kind="stable"):
        i = int(i)
        if conf[i] < min_score:
            break
        if i in set_aside or not top1[i] or (kept and _box_iou(boxes[i], boxes[kept]).max() > DUPLICATE_IOU):
            continue
        kept.append(i)
    if is_group is not None:
        groups = {c for c in kept
                  if any(c in regions.containers(i, among=[c]) and is_group(c, i) for i in kept if i != c)}
        kept = [i for i in kept if i not in groups]
    return [i for i in kept if not regions.containers(i, among=kept)]


def _doubtful(
    regions: Regions, boxes: np.ndarray, conf: np.ndarray, min_score: float, top1: np.ndarray, plausible: list[int]
) -> list[int]:
    """Objects that may be the target: regions whose top-1 label it is but below min_score, one per object, none a
    near-duplicate of, inside or around a plausible region (a part of a confident target is not another one)."""
    out: list[int] = []
    for i in (int(i) for i in np.argsort(-conf, kind="stable")):
        kept = plausible + out
        if not top1[i] or conf[i] >= min_score or _box_iou(boxes[i], boxes[kept]).max() > DUPLICATE_IOU:
            continue
        if regions.containers(i, among=kept) or any(i in regions.containers(k, among=[i]) for k in kept):
            continue
        out.append(i)
    return out


def _by_relation(
    target: Target,
    anchor: PhraseScores,
    plausible: list[int],
    candidates: Callable[[Collection[int]], list[int]],
    regions: Regions,
    boxes: np.ndarray,
    conf: np.ndarray,
    min_score: float,
) -> tuple[int, str | None]:
    """The plausible region that best stands in `target.relation` to the most confident anchor region.
    `candidates(set_aside)` gives the plausible regions again without those set aside."""
    best = plausible[0]
    order = np.argsort(-anchor.confidence, kind="stable")
    confident = [int(a) for a in order if anchor.confidence[a] >= min_score and int(a) not in plausible]
    # The anchor is a different object: not one of the target's candidates, nor a region holding one (a mask of the
    # book and the scissors lying on it reads as "book" too, and every candidate inside it would be skipped below).
    anchors = [a for a in confident if not any(a in regions.containers(i, among=[a]) for i in plausible)]
    if not anchors:
        top = float(anchor.confidence[order[0]])
        if confident:
            return best, (f"the anchor {anchor.phrase!r} was not found apart from a {target.phrase!r} (every region "
                          f"that reads as {anchor.phrase!r} at min_score {min_score:.2f} or more holds one), so "
                          f"'{target.phrase} {target.relation} {anchor.phrase}' cannot be chosen")
        return best, (f"the anchor {anchor.phrase!r} was not found (best {_below(top, min_score)}), so "
                      f"'{target.phrase} {target.relation} {anchor.phrase}' cannot be chosen")
    a = anchors[0]
    # A target region holding the anchor is the target and the anchor together, not the target: the target regions
    # inside it are the candidates (the bottle, not the bottle and the book it stands beside).
    around = set(regions.containers(a))
    if around & set(plausible):
        plausible = candidates(around)
    scored = []
    for i in plausible:
        if a in regions.containers(i, among=[a]) or i in regions.containers(a, among=[i]):
            continue  # a part of the anchor, or a region around it
        value = relations.fit(target.relation, boxes[i], boxes[a])
        if value is not None:
            scored.append((value, -conf[i], i))
    if not scored:
        return best, f"no {target.phrase!r} is {target.relation} the {anchor.phrase!r}"
    return min(scored)[2], None


def _by_spatial(
    target: Target, plausible: list[int], regions: Regions, boxes: np.ndarray, conf: np.ndarray
) -> int | None:
    """The plausible region at `target.ordinal` in the order of `target.spatial` (1 the first, 2 the second, -1 the
    last); None when fewer plausible regions exist than the ordinal asks for. Ties go to the more confident region.

    A corner ("top left") orders by the sum of the box centre's coordinates, each normalised by the image size and
    signed towards its side: a diagonal line sweeping in from that corner meets the regions in this order, so a
    region moderately far towards both sides can come before one at the very edge of only one.
    """
    key = _spatial_key(target.spatial, plausible, regions, boxes)
    n = target.ordinal
    if abs(n) > len(plausible):
        return None
    # "the last" counts from the other end, where ties still go to the more confident region.
    order = np.lexsort((-conf[plausible], key if n > 0 else -key))  # last key is primary
    return plausible[int(order[abs(n) - 1])]


def _spatial_key(spatial: str, plausible: list[int], regions: Regions, boxes: np.ndarray) -> np.ndarray:
    """(len(plausible),) sort key for the qualifier: lowest first."""
    b = boxes[plausible]
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    height, width = regions.masks.frame_size
    words = spatial.split()
    if len(words) == 2:  # Target has checked the pair: a top/bottom, then a left/right
        vertical, horizontal = words
        return ((1 if vertical == "top" else -1) * cy / height
                + (1 if horizontal == "left" else -1) * cx / width)
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
    return keys[spatial]  # Target has already checked spatial against SPATIAL_WORDS


# Where "the 3rd cup ..." counts from, for the reason when there are fewer.
_COUNTED = {"center": "from the centre", "nearest": "counting from the nearest",
            "farthest": "counting from the farthest", "biggest": "counting from the biggest",
            "smallest": "counting from the smallest"}


def _too_few(target: Target, found: int) -> str:
    """"asked for the 3rd 'cup' from the left but only 2 were found"."""
    n = target.ordinal
    nth = "last" if n == -1 else f"{_nth(-n)}-to-last" if n < 0 else _nth(n)
    counted = _COUNTED.get(target.spatial or "", f"from the {target.spatial}")
    return (f"asked for the {nth} {target.phrase!r} {counted} but only {found} "
            f"{'was' if found == 1 else 'were'} found")


def _nth(n: int) -> str:
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n if n < 20 else n % 10, 'th') }"


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
    masks: BoxMasks | np.ndarray,
    boxes: np.ndarray,
    similarity: np.ndarray,
    confidence: np.ndarray,
    part_margin: float,
    top_k: int,
) -> tuple[BoxMasks, np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(masks, BoxMasks):
        dense = np.asarray(masks).astype(bool, copy=False)
        if dense.ndim != 3:
            raise ValueError(f"masks has shape {dense.shape}; accepted: (N, H, W) bool, or BoxMasks")
        masks = BoxMasks.from_dense(dense)
    boxes = np.asarray(boxes, dtype=np.float64)
    sim = np.asarray(similarity, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    n = len(masks)
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
