"""Fast mode's map from windows (`fast_map: windows`): CLIP's reading of square windows over the frame, for where
to prompt.

The patch-token map (Matcher.similarity_map) reads each ViT patch through MaskCLIP's value path, a use CLIP was not
trained for; where its peaks miss the object, fast mode's prompts miss it and the goal goes on to exact mode's grid.
A window is a plain square crop, what CLIP was trained on, so its embedding scores the phrase as a crop is scored.
The cost is one image-tower pass per window, once per frame (every phrase asked on the frame reuses them): a few
batches on a GPU, but on a CPU a real TinyCLIP crop costs a third of the whole patch-token pass (50 tokens against
144 at 384 px), so tens of windows cost many such passes: seconds. Alone, its prompts land on the target more often
and fast mode falls back less, but on the world its answers were no better and it boxed more wrong regions. With the
token map's prompts beside its own (`both`), fast mode keeps what either finds: that is `auto` on a GPU, while a CPU
keeps the token map alone (config.fast_map_on; README, Performance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from promptbox.config import check_map_window
from promptbox.matching import over_scenery


@dataclass(frozen=True)
class WindowGrid:
    """Square windows over a frame, half a window apart. `boxes` (rows * cols, 4) xyxy source pixels are what the
    matcher crops (it adds `context_pad` around each, so each crop is `side` wide); `centres` (rows, cols, 2) x, y."""

    side: float
    boxes: np.ndarray
    centres: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.centres.shape[0]), int(self.centres.shape[1])

    def points(self, cells: np.ndarray) -> np.ndarray:
        """(k, 2) float32 x, y source pixels of flat cell indices (map_peaks.peak_cells)."""
        return self.centres.reshape(-1, 2)[np.asarray(cells, dtype=np.int64)].astype(np.float32)


def window_grid(frame_size: tuple[int, int], share: float, context_pad: float) -> WindowGrid:
    """Windows `share` of the frame's longest side wide (frame_size is (H, W)), every half window along both axes,
    the first and last touching the frame's edges (spread evenly between), inside the frame; a frame smaller than a
    window gets one window per short axis."""
    check_map_window(share)
    height, width = frame_size
    side = min(share * max(height, width), height, width)

    def axis(length: int) -> np.ndarray:
        steps = max(0, int(np.ceil((length - side) / (side / 2))))
        return np.linspace(side / 2, length - side / 2, steps + 1)

    cy, cx = np.meshgrid(axis(height), axis(width), indexing="ij")
    inner = side / (1.0 + 2.0 * context_pad) / 2.0
    boxes = np.stack([cx - inner, cy - inner, cx + inner, cy + inner], axis=-1).reshape(-1, 4)
    return WindowGrid(float(side), boxes.astype(np.float32), np.stack([cx, cy], axis=-1).astype(np.float32))


@dataclass(frozen=True)
class WindowEmbeddings:
    """A frame's windows and their unit CLIP image embeddings (rows * cols, D), on the model's device."""

    grid: WindowGrid
    vectors: torch.Tensor


def window_heat(windows: WindowEmbeddings, text: torch.Tensor, scenery: torch.Tensor) -> np.ndarray:
    """(rows, cols) each window's cosine to the phrase (`text`, (D,) unit) less its highest cosine to the scenery
    phrases (`scenery`, (B, D) unit): as the patch-token map, how much more the window looks like the phrase than
    like table or background (matching.over_scenery)."""
    return over_scenery(windows.vectors, text, scenery).reshape(windows.grid.shape).cpu().numpy()
