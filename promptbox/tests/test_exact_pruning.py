"""Exact mode's coarse-to-fine grid (AmgSettings.skip_covered_points): fewer prompts decoded, the same objects found."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from promptbox.config import AmgSettings
from promptbox.proposals import MaskProposer, _cover_finest, _Decoded, coarse_to_fine

WORLD_SAM = Path(__file__).resolve().parents[2] / "weights" / "world" / "mobile_sam.pt"


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 16, 32])
def test_every_grid_point_comes_exactly_once(side):
    stages = coarse_to_fine(side)
    order = np.concatenate(stages)
    assert sorted(order.tolist()) == list(range(side * side))


def test_the_first_stage_spreads_over_the_frame():
    first = coarse_to_fine(16)[0]
    rows, cols = np.divmod(first, 16)
    # One point in each quadrant, at the quadrant's centre: large segments are met first.
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(4, 4), (4, 12), (12, 4), (12, 12)]
    with pytest.raises(ValueError, match="side=0 must be at least 1"):
        coarse_to_fine(0)


def _decoded(masks: list[np.ndarray], prompts: list[int], levels: list[int], kind: str = "packed") -> _Decoded:
    out = _Decoded()
    if kind == "packed":  # as decoded on the host
        out.packed.append(np.packbits(np.stack(masks).reshape(len(masks), -1), axis=1))
    else:  # as a GPU keeps them (here on the CPU: the same code)
        out.dense.append(torch.from_numpy(np.stack(masks)))
    out.prompts.append(np.array(prompts))
    out.levels.append(np.array(levels))
    return out


def _covered(masks: list[np.ndarray], prompts: list[int], levels: list[int], margin: int = 0) -> np.ndarray:
    """_cover_finest with every pixel of the frame as a grid point: (H, W) bool; the same from packed masks and
    from full-size ones."""
    height, width = masks[0].shape
    rows, cols = (a.ravel() for a in np.mgrid[:height, :width])
    found = []
    for kind in ("packed", "dense"):
        covered = np.zeros(height * width, bool)
        _cover_finest(covered, rows, cols, (height, width), _decoded(masks, prompts, levels, kind), 0, margin)
        found.append(covered.reshape(height, width))
    np.testing.assert_array_equal(*found)
    return found[0]


def test_only_a_prompts_finest_level_covers_points():
    left = np.zeros((8, 8), bool)
    left[:, :4] = True
    both = np.ones((8, 8), bool)  # a coarser level that joins the left object with its neighbour
    # Prompt 0 kept its finest level (the left object) and the joined one; prompt 1 kept only a joined level.
    covered = _covered([left, both, both], [0, 0, 1], [0, 1, 2])
    assert covered[:, :4].all() and not covered[:, 4:].any()


@pytest.fixture(scope="module")
def world_sam():
    if not WORLD_SAM.is_file():
        pytest.fail(f"{WORLD_SAM} is missing: it is committed with the repository")
    from promptbox import weights

    sam, random = weights.load_sam(str(WORLD_SAM), "cpu", False)
    assert not random
    return sam


def test_on_a_world_frame_fewer_prompts_find_the_same_objects(world_sam):
    """World MobileSAM (real architecture, trained weights) on a validation scene: the coarse-to-fine grid decodes
    under a third of the 16x16 grid, and every object the full grid segments (mask IoU >= 0.7) it segments too."""
    from promptbox.world.scene import generate_scene

    scene = generate_scene(20261123, 0)
    proposer = MaskProposer(world_sam, AmgSettings(skip_covered_points=False), "cpu")
    frame = proposer.embed(scene.image)
    with torch.inference_mode():
        full = proposer.propose(frame)
        proposer.settings = AmgSettings(skip_covered_points=True)
        pruned = proposer.propose(frame)
    assert full.prompts_decoded == 256
    assert pruned.prompts_decoded < 256 // 3  # 66 on this scene, 35-46 on the bench scenes

    def best_iou(proposals, mask):
        dense = proposals.masks.to_dense()
        inter = (dense & mask).sum(axis=(1, 2))
        union = (dense | mask).sum(axis=(1, 2))
        return float((inter / np.maximum(union, 1)).max())

    found_full = [best_iou(full, o.mask) >= 0.7 for o in scene.objects]
    found_pruned = [best_iou(pruned, o.mask) >= 0.7 for o in scene.objects]
    assert sum(found_full) >= 3  # the case under test: objects the full grid does find
    assert all(p for f, p in zip(found_full, found_pruned, strict=True) if f), (found_full, found_pruned)


def test_points_near_a_segments_edge_are_still_decoded():
    square = np.zeros((40, 40), bool)
    square[5:35, 5:35] = True
    covered = _covered([square], [0], [0], margin=5)
    assert covered[10:30, 10:30].all()  # the inside
    assert not covered[5:10, 5:35].any() and not covered[30:35, 5:35].any()  # the band along the edge


def test_cover_reads_the_erosion_of_the_finest_segments_at_the_points():
    # Two finest segments of one batch, one touching the frame's edge (the edge pixels repeat beyond it), and a
    # coarser level that must not count; the points are every pixel, so every erosion value is compared.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:60, :80]
    blob = (yy - 20) ** 2 / 300 + (xx - 25) ** 2 / 500 <= 1
    edge = (yy < 25) & (xx > 55) & (rng.random((60, 80)) > 0.02)  # with pinholes
    coarse = np.ones((60, 80), bool)
    covered = _covered([blob, edge, coarse], [0, 1, 1], [0, 0, 1], margin=4)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    union = (blob | edge).astype(np.uint8)
    expected = cv2.erode(union, element, borderType=cv2.BORDER_REPLICATE).astype(bool)
    assert expected.sum() > 200 and (union.astype(bool) & ~expected).sum() > 200  # insides and edge bands occur
    assert np.array_equal(covered, expected)
