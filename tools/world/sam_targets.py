"""Prompts and their mask targets on a world scene, at SAM's three levels (part, object, group), as SAM trains.

A point on a part asks for [part, whole object, touching group]; a point on a one-part object for
[object, object, group]; a point on the table for the table; a box for the object inside it. The single-mask
output (token 0) always learns the whole object, the unambiguous answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from promptbox.world.scene import Scene

GROUP_TOUCH_PX = 3  # objects this close are one group (SAM's third level: "the pile")


@dataclass
class PromptSet:
    """K prompts of one kind on one scene, in source pixels, with (K, 4, H, W) bool targets per mask token."""

    kind: str  # "point" or "box"
    coords: np.ndarray  # (K, 2) points xy, or (K, 4) boxes xyxy
    targets: np.ndarray  # (K, 4, H, W) bool: token 0 (single mask), tokens 1-3 (part, object, group)


def groups(scene: Scene) -> list[np.ndarray]:
    """For each object, the union of the objects it touches (transitively), itself included."""
    n = len(scene.objects)
    kernel = np.ones((2 * GROUP_TOUCH_PX + 1,) * 2, np.uint8)
    grown = [cv2.dilate(o.mask.astype(np.uint8), kernel) > 0 for o in scene.objects]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if (grown[i] & scene.objects[j].mask).any():
                parent[root(i)] = root(j)
    unions: dict[int, np.ndarray] = {}
    for i, obj in enumerate(scene.objects):
        r = root(i)
        unions[r] = obj.mask if r not in unions else unions[r] | obj.mask
    return [unions[root(i)] for i in range(n)]


def _point_in(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Prefer the interior: a point on a boundary pixel is ambiguous even to a person.
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ys, xs = np.nonzero(eroded if eroded.any() else mask)
    k = rng.integers(len(xs))
    return np.array([xs[k], ys[k]], np.float64)


def sample_prompts(scene: Scene, rng: np.random.Generator, points: int, boxes: int) -> list[PromptSet]:
    """`points` point prompts (on parts, objects and the table) and `boxes` jittered box prompts."""
    group_of = groups(scene)
    table = scene.table_mask
    coords, targets = [], []
    for _ in range(points):
        if not scene.objects or rng.random() < 0.15:
            mask = table
            coords.append(_point_in(mask, rng))
            targets.append(np.stack([mask, mask, mask, mask]))
            continue
        i = int(rng.integers(len(scene.objects)))
        obj = scene.objects[i]
        part = obj.parts[int(rng.integers(len(obj.parts)))] if len(obj.parts) > 1 and rng.random() < 0.6 else None
        first = part.mask if part is not None else obj.mask
        coords.append(_point_in(first, rng))
        targets.append(np.stack([obj.mask, first, obj.mask, group_of[i]]))
    sets = [PromptSet("point", np.array(coords), np.array(targets))]
    if boxes and scene.objects:
        coords, targets = [], []
        for _ in range(boxes):
            obj = scene.objects[int(rng.integers(len(scene.objects)))]
            x0, y0, x1, y1 = obj.box_xyxy
            jitter = 0.05 * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0]) * rng.standard_normal(4)
            coords.append(np.array([x0, y0, x1 - 1, y1 - 1], np.float64) + jitter)
            targets.append(np.stack([obj.mask] * 4))
        sets.append(PromptSet("box", np.array(coords), np.array(targets)))
    return sets
