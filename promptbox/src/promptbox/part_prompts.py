"""Point prompts inside a whole, for a part request ("the cap of the marker").

Exact mode's grid decodes few points on a small object, and box NMS and the quality thresholds keep its most stable
masks: usually the whole object, rarely its cap or handle. SAM does segment parts when a point lands on one: the
finest of its three mask levels is the part under the point. So once the whole is confidently named, points spread
over its mask are decoded, and the masks inside it become the part's candidates; selection then chooses among them
as among any regions inside the whole.
"""

from __future__ import annotations

import numpy as np

from promptbox.masks import BoxMasks

# Points per whole: farthest-point spacing gives every twelfth or so of the shape one, and one decode batch holds
# them. Chosen before any measurement, not tuned on the world.
POINTS = 12
# Pixels of the mask considered for the spacing: a subsample keeps the farthest-point search cheap on large masks.
_SAMPLE = 4000


def spread_points(masks: BoxMasks, index: int, count: int = POINTS) -> np.ndarray:
    """(k, 2) x, y source pixels, k <= count: points on mask `index`, each as far as possible from those before it
    (farthest-point sampling from the pixel nearest the mask's centroid), so they cover every part of the shape,
    thin ones too. Deterministic. Empty for an empty mask."""
    crop = masks.crop(index)
    rows, cols = np.nonzero(crop)
    if len(rows) == 0 or count < 1:
        return np.zeros((0, 2), np.float32)
    x0, y0 = masks.boxes[index, 0], masks.boxes[index, 1]
    pixels = np.stack([cols + x0 + 0.5, rows + y0 + 0.5], axis=1).astype(np.float64)  # pixel centres
    if len(pixels) > _SAMPLE:
        pixels = pixels[np.linspace(0, len(pixels) - 1, _SAMPLE).astype(np.int64)]
    chosen = [int(np.argmin(((pixels - pixels.mean(axis=0)) ** 2).sum(axis=1)))]
    distance = ((pixels - pixels[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < min(count, len(pixels)):
        far = int(np.argmax(distance))
        if distance[far] == 0.0:
            break
        chosen.append(far)
        distance = np.minimum(distance, ((pixels - pixels[far]) ** 2).sum(axis=1))
    return pixels[chosen].astype(np.float32)
