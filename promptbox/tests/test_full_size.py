"""full_size resizes each mask on CPU only over the pixels its logits can reach, and must still give what resizing
the whole frame gives: upstream's masks, stability scores and boxes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mobile_sam.utils.amg import batched_mask_to_box, calculate_stability_score

from promptbox import weights
from promptbox.full_size import full_size, resize_maps
from promptbox.proposals import MaskProposer
from promptbox.shared_decoder import low_res_masks, two_way_transformer

THRESHOLD, OFFSET = 0.0, 1.0  # mobile_sam's mask threshold, AMG's stability offset


def _whole_frame(maps, low_res: torch.Tensor):
    logits = maps.to_rows @ (low_res[:, : maps.rows, : maps.cols] @ maps.to_cols)
    masks = logits > THRESHOLD
    return masks, calculate_stability_score(logits, THRESHOLD, OFFSET), batched_mask_to_box(masks)


def _assert_same(maps, low_res: torch.Tensor) -> None:
    got = full_size(maps, low_res, THRESHOLD, OFFSET)
    masks, stability, boxes = _whole_frame(maps, low_res)
    assert torch.equal(got.masks, masks)
    assert torch.equal(got.boxes, boxes)
    torch.testing.assert_close(got.stability, stability, equal_nan=True, atol=0, rtol=0)


def _bumps(grid: tuple[int, int]) -> torch.Tensor:
    """Hand-made low-res logits: a small object (logits cross both stability levels), one at the frame's corner, a
    wide faint one that never reaches the mask threshold, and nothing at all (upstream scores that 0 / 0)."""
    rows, cols = 4 * grid[0], 4 * grid[1]
    yy, xx = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                            indexing="ij")

    def bump(cy: float, cx: float, radius: float, peak: float) -> torch.Tensor:
        return -6.0 + (peak + 6.0) * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))

    return torch.stack([bump(70.3, 101.7, 6.0, 8.0), bump(0.0, cols - 1.0, 9.0, 5.0),
                        bump(90.0, 40.0, 20.0, -0.5), torch.full((rows, cols), -6.0)])


@pytest.mark.parametrize("grid, input_size, original_size", [((48, 64), (768, 1024), (480, 640)),
                                                             ((64, 43), (1024, 683), (300, 200)),
                                                             ((64, 64), (768, 1024), (480, 640))])
def test_hand_made_logits_give_the_whole_frames_answer(grid, input_size, original_size):
    maps = resize_maps(input_size, original_size, grid, "cpu")
    low_res = _bumps(grid)
    _assert_same(maps, low_res)
    got = full_size(maps, low_res, THRESHOLD, OFFSET)
    # The cases occur: a mask far smaller than the frame, one at its corner, a counted-but-empty one, an empty one.
    areas = got.masks.flatten(1).sum(dim=1)
    assert 0 < areas[0] < 0.05 * math.prod(original_size) and areas[1] > 0
    assert areas[2] == 0 and got.stability[2] == 0 and math.isnan(got.stability[3])
    assert got.boxes[1, 2] == original_size[1] - 1 and got.boxes[1, 1] == 0  # touches the right and top edges


def test_world_masks_give_the_whole_frames_answer():
    """The world's MobileSAM on a world frame: real logits, of objects and of the table, for points all over it."""
    from promptbox.world import generate_scene

    checkpoint = Path(__file__).resolve().parents[2] / "weights" / "world" / "mobile_sam.pt"
    sam, _ = weights.load_sam(str(checkpoint), "cpu", False)
    proposer = MaskProposer(sam)
    frame = proposer.embed(generate_scene(20261123, 0, (640, 480), split="val").image)
    points = np.random.default_rng(5).uniform([0, 0], [640, 480], size=(12, 2))
    coords = torch.as_tensor(proposer.transform.apply_coords(points, frame.original_size), dtype=torch.float32)
    with torch.inference_mode():
        shared = proposer._shared_image_side(frame)
        hs, keys = two_way_transformer(sam, shared, proposer._prompt_tokens(coords))
        low_res = low_res_masks(sam.mask_decoder, hs, keys, slice(1, 4), shared.grid).flatten(0, 1)
    maps = resize_maps(frame.input_size, frame.original_size, shared.grid, "cpu")
    _assert_same(maps, low_res)
    areas = full_size(maps, low_res, THRESHOLD, OFFSET).masks.flatten(1).sum(dim=1)
    assert (areas < 0.1 * 640 * 480).sum() >= 6, "most points should give masks of single objects"
