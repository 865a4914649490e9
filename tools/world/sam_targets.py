"""Prompts and their mask targets on a world scene, at SAM's three levels (part, object, group), as SAM trains.

A point on a part asks for [part, whole object, touching group]; a point on a one-part object for
[object, object, group]; a point on the table for the table; a box for the object inside it. The single-mask
output (token 0) always learns the whole object, the unambiguous answer.

Everything a step needs is computed once per scene (`SceneTargets`): every mask at the decoder's low resolution and
the interior points to prompt at, so a training step costs the decoder and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from promptbox.world.groups import touching_groups
from promptbox.world.scene import Scene

LOW_RES = 256  # the decoder's mask side for a 1024 input
POINTS_PER_REGION = 64  # interior points kept per region to sample prompts from


def _interior(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Prefer the interior: a point on a boundary pixel is ambiguous even to a person.
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ys, xs = np.nonzero(eroded if eroded.any() else mask)
    pick = rng.choice(len(xs), size=min(POINTS_PER_REGION, len(xs)), replace=False)
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float64)


def _low_res(mask: np.ndarray) -> np.ndarray:
    """A source mask as the decoder sees it: resized with the longest side to 256, padded bottom-right."""
    h, w = mask.shape
    scale = LOW_RES / max(h, w)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    out = np.zeros((LOW_RES, LOW_RES), np.uint8)
    out[:nh, :nw] = cv2.resize(mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA) > 0.5
    return out


@dataclass
class SceneTargets:
    """Low-res masks (R, 256, 256) of every region and, per prompt kind, which region each level asks for."""

    size_hw: tuple[int, int]
    masks: np.ndarray  # (R, 256, 256) uint8: objects, parts, groups, table
    # One entry per promptable region: (interior points (P, 2) source px, levels (4,) region indices, object box)
    points: list[tuple[np.ndarray, np.ndarray]]
    boxes: list[tuple[np.ndarray, int]]  # (object box xyxy edges, its region index)
    table: int  # index of the table's entry in `points`


def scene_targets(scene: Scene, rng: np.random.Generator) -> SceneTargets:
    masks: list[np.ndarray] = []

    def add(mask: np.ndarray) -> int:
        masks.append(_low_res(mask))
        return len(masks) - 1

    points: list[tuple[np.ndarray, np.ndarray]] = []
    boxes: list[tuple[np.ndarray, int]] = []
    for obj, group in zip(scene.objects, touching_groups(scene), strict=True):
        whole, together = add(obj.mask), add(group)
        points.append((_interior(obj.mask, rng), np.array([whole, whole, whole, together])))
        if len(obj.parts) > 1:
            for part in obj.parts:
                p = add(part.mask)
                points.append((_interior(part.mask, rng), np.array([whole, p, whole, together])))
        boxes.append((np.array(obj.box_xyxy, np.float64), whole))
    table = add(scene.table_mask)
    points.append((_interior(scene.table_mask, rng), np.array([table] * 4)))
    return SceneTargets(scene.image.shape[:2], np.stack(masks), points, boxes, len(points) - 1)


@dataclass
class PromptSet:
    """K prompts of one kind in source pixels, with (K, 4, 256, 256) float targets per mask token."""

    kind: str  # "point" or "box"
    coords: np.ndarray  # (K, 2) points xy, or (K, 4) boxes xyxy
    targets: np.ndarray


def sample_prompts(
    targets: SceneTargets, rng: np.random.Generator, points: int, boxes: int, window: tuple[int, ...] | None = None
) -> list[PromptSet]:
    """`points` point prompts (on parts, objects and the table; 15% on the table) and `boxes` jittered box prompts.
    With `window` (x0, y0, x1, y1 source px), points lie inside it and boxes are of objects centred in it."""

    def inside(xy: np.ndarray) -> np.ndarray:
        if window is None:
            return np.ones(len(xy), bool)
        x0, y0, x1, y1 = window
        return (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)

    usable = [(k, pts[inside(pts)]) for k, (pts, _) in enumerate(targets.points)]
    usable = [(k, pts) for k, pts in usable if len(pts)]
    objects = [(k, pts) for k, pts in usable if k != targets.table]
    table = [(k, pts) for k, pts in usable if k == targets.table]
    sets = []
    coords, levels = [], []
    for _ in range(points):
        pool = table if (not objects or (table and rng.random() < 0.15)) else objects
        if not pool:
            break
        k, pts = pool[int(rng.integers(len(pool)))]
        coords.append(pts[int(rng.integers(len(pts)))])
        levels.append(targets.points[k][1])
    if coords:
        sets.append(PromptSet("point", np.array(coords), targets.masks[np.array(levels)].astype(np.float32)))
    centred = [b for b in targets.boxes if inside(((b[0][:2] + b[0][2:]) / 2)[None])[0]]
    if boxes and centred:
        coords, levels = [], []
        for _ in range(boxes):
            box, whole = centred[int(rng.integers(len(centred)))]
            w, h = box[2] - box[0], box[3] - box[1]
            jitter = 0.05 * np.array([w, h, w, h]) * rng.standard_normal(4)
            coords.append(np.array([box[0], box[1], box[2] - 1, box[3] - 1]) + jitter)
            levels.append([whole] * 4)
        sets.append(PromptSet("box", np.array(coords), targets.masks[np.array(levels)].astype(np.float32)))
    return sets
