"""Matching that scales with the number of proposals: every region gets a mask-pooled embedding from the frame's
CLIP patch tokens (one ViT pass, no per-mask cost), and only a shortlist is re-scored with its own masked crop.

A crop costs a full CLIP image forward per region; on real frames exact mode keeps tens of masks, so crop-everything
costs more than the MobileSAM encoder. Pooled patch tokens are coarse (one token per 32 px at the map's resolution)
but good enough to rank: the shortlist is the few regions most like each phrase the command asks about, plus the
regions that contain them, so whole-over-parts and the part rules still see the whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from promptbox.masks import BoxMasks
from promptbox.matching import PatchTokens

_POOL_BATCH = 16  # masks turned into token-grid weights at a time: N x H x W floats at once would be large


def pooled_embeddings(tokens: PatchTokens, masks: BoxMasks | np.ndarray) -> torch.Tensor:
    """(N, D) L2-normalised embeddings of the regions `masks` (BoxMasks, or an (N, H, W) bool stack, frame size):
    the patch tokens averaged with each token's share of the mask's pixels as weight."""
    if not isinstance(masks, BoxMasks):
        masks = np.asarray(masks)
    if len(masks.shape) != 3 or masks.shape[1:] != tuple(tokens.frame_size):
        raise ValueError(f"masks: shape {masks.shape} does not fit a {tokens.frame_size} frame; accepted: (N, H, W)")
    grid_h, grid_w, dim = tokens.tokens.shape
    flat = tokens.tokens.reshape(grid_h * grid_w, dim)
    out = []
    for start in range(0, len(masks), _POOL_BATCH):
        # Full frames only for this batch: area pooling over the frame is what gives each token its weight.
        stop = min(start + _POOL_BATCH, len(masks))
        dense = masks.to_dense(range(start, stop)) if isinstance(masks, BoxMasks) else masks[start:stop]
        batch = torch.from_numpy(np.ascontiguousarray(dense)).to(flat.device)
        # Area interpolation gives each token the fraction of its cell the mask covers.
        weights = F.interpolate(batch[:, None].float(), size=(grid_h, grid_w), mode="area")[:, 0]
        weights = weights.reshape(len(batch), -1)
        # A mask smaller than any cell still has its cell's weight, so it is never left without an embedding.
        out.append(weights @ flat / weights.sum(dim=1, keepdim=True).clamp_min(1e-12))
    if not out:
        return flat.new_zeros(0, dim)
    return F.normalize(torch.cat(out), dim=-1)


def shortlist(
    scores: Sequence[np.ndarray],
    size: int,
    containers: Callable[[int], list[int]],
) -> np.ndarray:
    """Sorted indices of the regions to re-score with crops: the `size` best-scored regions for each phrase
    (target, and the whole or the anchor the command names), and every region that contains one of them."""
    if size < 1:
        raise ValueError(f"size={size!r} must be at least 1")
    chosen: set[int] = set()
    for score in scores:
        order = np.argsort(-np.asarray(score), kind="stable")
        chosen.update(int(i) for i in order[:size])
    for i in list(chosen):
        chosen.update(containers(i))
    return np.array(sorted(chosen), dtype=np.int64)
