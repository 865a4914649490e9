"""The world's stand-in for MobileSAM's network: SAM's three levels from a scene's exact masks, run through the
product's own grid, NMS and clean-up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptbox.config import AmgSettings
from promptbox.evaluation.world_masks import ORACLE_TAG, WorldMaskProposer
from promptbox.masks import BoxMasks
from promptbox.world import generate_scene, write_dataset

SEED, SIZE = 5, (320, 240)


@pytest.fixture(scope="module")
def oracle() -> WorldMaskProposer:
    return WorldMaskProposer(SEED, 3, SIZE, "val", AmgSettings(points_per_side=16))


def _truth_masks(scene) -> list[np.ndarray]:
    masks = [scene.table_mask]
    for obj in scene.objects:
        masks.append(obj.mask)
        masks.extend(part.mask for part in obj.parts)
    return masks


def test_a_point_on_a_part_gives_the_part_the_object_and_its_group(oracle: WorldMaskProposer):
    scene = next(s for s in (generate_scene(SEED, i, SIZE) for i in range(3)) if any(len(o.parts) > 1
                 for o in s.objects))
    obj = next(o for o in scene.objects if len(o.parts) > 1)
    part = obj.parts[1]
    ys, xs = np.nonzero(part.mask)
    frame = oracle.embed(scene.image)
    proposals = oracle.propose_points(frame, np.array([[xs[len(xs) // 2], ys[len(ys) // 2]]]))
    kept = list(proposals.masks.to_dense())
    assert any(np.array_equal(m, part.mask) for m in kept)
    assert any(np.array_equal(m, obj.mask) for m in kept) or any((m & obj.mask).sum() == obj.area for m in kept)


def test_exact_mode_proposes_the_scenes_own_masks_through_the_product_nms(oracle: WorldMaskProposer):
    scene = generate_scene(SEED, 1, SIZE)
    proposals = oracle.propose(oracle.embed(scene.image))
    truth = _truth_masks(scene)
    assert len(proposals) >= len(scene.objects) // 2
    assert isinstance(proposals.masks, BoxMasks)  # the type MobileSAM's proposals hold
    for mask in proposals.masks.to_dense():  # every proposal is a real region or a group of touching objects
        assert any(np.array_equal(mask, t) for t in truth) or all(
            not (mask & o.mask).any() or (mask & o.mask).sum() == o.area for o in scene.objects
        )
    # Boxes keep upstream's inclusive maximum, as MobileSAM proposals do.
    ys, xs = np.nonzero(proposals.masks.full(0))
    assert tuple(proposals.boxes_xyxy[0]) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_a_frame_from_elsewhere_is_refused(oracle: WorldMaskProposer):
    with pytest.raises(ValueError, match="not a scene of this world stream"):
        oracle.embed(np.zeros((240, 320, 3), np.uint8))


def test_the_oracle_reads_how_a_world_folder_was_drawn(tmp_path):
    folder = write_dataset(tmp_path / "w", 2, SEED, SIZE)
    assert json.loads((folder / "world.json").read_text()) == {"seed": SEED, "scenes": 2, "size": list(SIZE),
                                                                "split": "val"}
    oracle = WorldMaskProposer.for_dataset(folder)
    assert oracle.tag == ORACLE_TAG
    oracle.embed(generate_scene(SEED, 1, SIZE).image)  # knows the folder's scenes
    (folder / "world.json").unlink()
    with pytest.raises(ValueError, match="--world-masks: .*world.json could not be read"):
        WorldMaskProposer.for_dataset(folder)
