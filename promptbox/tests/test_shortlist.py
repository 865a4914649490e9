"""The matching shortlist: mask-pooled patch tokens rank the proposals, and only the best few per phrase (and the
regions that contain them) get a crop of their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptbox.config import LocatorConfig
from promptbox.masks import BoxMasks
from promptbox.matching import PatchTokens
from promptbox.regions import Regions
from promptbox.shortlist import pooled_embeddings, shortlist

WORLD_CLIP = Path(__file__).resolve().parents[2] / "weights" / "world" / "world-clip"


def _tokens() -> PatchTokens:
    """A 2x2 token grid over an 8x8 frame: each cell's token is a different axis."""
    return PatchTokens(torch.eye(4).reshape(2, 2, 4), (8, 8))


def test_a_mask_inside_one_cell_gets_that_cells_token():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 0:4, 0:4] = True  # the whole top-left cell
    masks[1, 5, 6] = True  # one pixel of the bottom-right cell
    pooled = pooled_embeddings(_tokens(), masks)
    assert torch.allclose(pooled[0], torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(pooled[1], torch.tensor([0, 0, 0, 1.0]))


def test_a_mask_is_weighted_by_its_share_of_each_cell():
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 0:4, 0:4] = True  # 16 px of the top-left cell
    masks[0, 0:2, 4:6] = True  # 4 px of the top-right cell
    pooled = pooled_embeddings(_tokens(), masks)[0]
    expected = torch.nn.functional.normalize(torch.tensor([16.0, 4.0, 0, 0]), dim=0)
    assert torch.allclose(pooled, expected, atol=1e-6)


def test_masks_of_another_frame_size_are_refused():
    with pytest.raises(ValueError, match=r"masks: shape \(1, 6, 8\) does not fit a \(8, 8\) frame"):
        pooled_embeddings(_tokens(), np.zeros((1, 6, 8), bool))
    with pytest.raises(ValueError, match=r"masks: shape \(1, 6, 8\) does not fit a \(8, 8\) frame"):
        pooled_embeddings(_tokens(), BoxMasks.from_dense(np.zeros((1, 6, 8), bool)))


def test_box_masks_pool_as_their_dense_stack():
    """Proposals hold BoxMasks; pooling them (full frames a batch at a time) gives the dense stack's numbers."""
    masks = np.random.default_rng(1).random((40, 8, 8)) < 0.3  # more than one pooling batch
    masks[3] = False  # an empty mask: no weight anywhere, still an embedding
    torch.testing.assert_close(pooled_embeddings(_tokens(), BoxMasks.from_dense(masks)),
                               pooled_embeddings(_tokens(), masks), rtol=0, atol=0)


def test_the_shortlist_is_the_best_per_phrase_and_their_containers():
    masks = np.zeros((5, 10, 10), bool)
    masks[0, 0:2, 0:2] = True  # a cap...
    masks[1, 0:6, 0:3] = True  # ...inside its marker
    masks[2, 5:9, 5:9] = True
    masks[3, 8:10, 0:2] = True
    masks[4, 0:3, 6:9] = True
    target = np.array([0.9, 0.1, 0.2, 0.3, 0.1])  # the cap is most like the target
    anchor = np.array([0.1, 0.2, 0.1, 0.2, 0.8])  # region 4 most like the anchor
    chosen = shortlist([target, anchor], 1, Regions(masks).containers)
    assert chosen.tolist() == [0, 1, 4]  # the marker comes with its cap; 2 and 3 get no crop
    assert shortlist([target], 2, Regions(masks).containers).tolist() == [0, 1, 3]


def test_a_shortlist_of_nothing_is_refused():
    with pytest.raises(ValueError, match="size=0 must be at least 1"):
        shortlist([np.zeros(3)], 0, lambda i: [])


def test_matching_settings_are_checked():
    with pytest.raises(ValueError, match="matching='all' is not supported; accepted: shortlist, crops"):
        LocatorConfig(matching="all")
    with pytest.raises(ValueError, match="shortlist_size=0 must be at least 1"):
        LocatorConfig(shortlist_size=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from promptbox.world import write_dataset

    return write_dataset(tmp_path_factory.mktemp("world"), 2, 20261124, (640, 480))


def test_on_a_world_frame_only_the_shortlist_is_cropped_and_the_answer_is_crop_everythings(world, monkeypatch):
    """The world CLIP (real architecture, trained weights) on exact mode's proposals from the scene's masks, with a
    shortlist of 4 per phrase: fewer regions are cropped than proposed, and most answers stay crop-everything's
    (a shortlist drawn at random keeps the chosen region about a third of the time). The agreement at the default
    size is measured by tools/world/compare_matching.py (README "Matching")."""
    from promptbox.evaluation.dataset import load_dataset
    from promptbox.evaluation.world_masks import WorldMaskProposer
    from promptbox.locator import Locator

    dataset = load_dataset(world)
    config = LocatorConfig(clip_model=str(WORLD_CLIP), matching="crops", shortlist_size=4)
    crops = Locator(config, proposer=WorldMaskProposer.for_dataset(world, config.amg))
    listed = Locator(config.with_overrides(matching="shortlist"), proposer=crops.proposer)
    cropped: list[int] = []
    encode = listed.matcher.encode_regions
    monkeypatch.setattr(listed.matcher, "encode_regions", lambda image, boxes, masks, **turn: (
        cropped.append(len(boxes)), encode(image, boxes, masks, **turn))[1])  # colour-blind crops are crops too

    same = asked = 0
    for name, queries in dataset.frames().items():
        image = dataset.load_image(name)
        proposals = len(crops.proposer.propose(crops.prepare(image)))
        assert proposals > 4 + 4  # the case under test: more proposals than a shortlist of target and whole
        cropped.clear()
        for query in queries:
            a, b = crops.locate(image, query.command), listed.locate(image, query.command)
            same += getattr(a, "box_xyxy", None) == getattr(b, "box_xyxy", None)
            asked += 1
        assert cropped and min(cropped) < proposals, (cropped, proposals)
    assert same >= 0.7 * asked, f"{same} of {asked} answers agree"
