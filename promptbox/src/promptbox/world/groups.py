"""Groups of touching objects: SAM's third mask level ("the pile") for a point on any object of the group."""

from __future__ import annotations

import cv2
import numpy as np

from promptbox.world.scene import Scene

GROUP_TOUCH_PX = 3  # objects this close are one group


def touching_groups(scene: Scene) -> list[np.ndarray]:
    """For each object, the union of the objects it touches (transitively), itself included; objects of one
    group share one array."""
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
