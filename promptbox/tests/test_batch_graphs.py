"""CUDA graphs (batch_graphs) against eager launches, on a GPU. The decoder: the same outputs for every batch size,
for a second frame after the first (its image side must be copied in), and the same proposals. CLIP's image tower:
the same region embeddings for every batch size, and a later batch does not overwrite an earlier one's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptbox.config import AmgSettings
from promptbox.proposals import MaskProposer

WORLD_SAM = Path(__file__).resolve().parents[2] / "weights" / "world" / "mobile_sam.pt"

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA graphs need a CUDA device; this machine has none (run it on the device)")


@pytest.fixture(scope="module")
def proposers():
    from promptbox import weights

    sam, random = weights.load_sam(str(WORLD_SAM), "cuda", False)
    assert not random
    graphs = MaskProposer(sam, AmgSettings(), "cuda", cuda_graphs=True)
    eager = MaskProposer(sam, AmgSettings(), "cuda", cuda_graphs=False)
    return graphs, eager


@pytest.fixture(scope="module")
def frames():
    from promptbox.world.scene import generate_scene

    return [generate_scene(20261124, i).image for i in range(2)]


@pytest.mark.parametrize("count", [1, 6, 16, 64, 70])
def test_transformer_outputs_equal_eager(proposers, frames, count):
    graphs, eager = proposers
    rng = np.random.default_rng(count)
    for image in frames:  # the second frame replays graphs captured on the first
        frame = graphs.embed(image)
        shared = graphs._shared_image_side(frame)
        coords = torch.as_tensor(rng.uniform(0, 1000, (count, 2)), dtype=torch.float32, device="cuda")
        with torch.inference_mode():
            got = [t.clone() for t in graphs._prompt_side(shared, coords, slice(1, 4))]
            expected = eager._prompt_side(shared, coords, slice(1, 4))
        for a, b in zip(got, expected, strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert graphs._graphs is not None and (count > 64 or graphs._graphs._graphs)  # the graph path did run


def test_proposals_equal_eager(proposers, frames):
    graphs, eager = proposers
    for image in frames:
        frame = graphs.embed(image)
        ours, theirs = graphs.propose(frame), eager.propose(frame)
        assert len(ours) >= 3  # real masks of world objects, not one whole-frame mask
        # A padded batch may pick other GEMM kernels than eager's: logits agree to float rounding, so a pixel at
        # the threshold may flip, and nothing more.
        assert len(ours) == len(theirs)
        np.testing.assert_allclose(ours.boxes_xyxy, theirs.boxes_xyxy, atol=1)
        for i in range(len(ours)):
            assert ours.masks.iou(i, [i], theirs.masks)[0] >= 0.99


def test_warm_up_captures_every_batch_size(frames):
    from promptbox import weights

    sam, _ = weights.load_sam(str(WORLD_SAM), "cuda", False)
    proposer = MaskProposer(sam, AmgSettings(), "cuda")
    proposer.warm_up_decoder(proposer.embed(frames[0]))
    assert sorted(key[-1] for key in proposer._graphs._graphs) == [8, 16, 32, 64]


def test_captures_beside_background_embedding_through_the_locator(frames):
    # The ROS node embeds frames in a background thread (Locator.prepare) while goals run; a capture beside other
    # CUDA work fails (an unguarded thread here made the capture raise), so the Locator's lock must serialise them.
    import threading

    from promptbox.config import LocatorConfig
    from promptbox.locator import Locator

    root = WORLD_SAM.parent
    locator = Locator(LocatorConfig(sam_checkpoint=str(WORLD_SAM), clip_model=str(root / "world-clip"),
                                    device="cuda"))
    errors: list[BaseException] = []
    stop = threading.Event()

    def embed_loop() -> None:
        try:
            while not stop.is_set():
                locator.forget_frames()
                locator.prepare(frames[1])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    worker = threading.Thread(target=embed_loop)
    worker.start()
    try:
        answer = locator.locate(frames[0], "take the apple")  # no warm-up: the graphs are captured here
    finally:
        stop.set()
        worker.join()
    assert not errors, errors
    assert answer is not None and locator.proposer._graphs._graphs  # captured, beside the embedding thread


@pytest.fixture(scope="module")
def matchers():
    from promptbox import weights
    from promptbox.matching import Matcher

    clip, tokenizer, random = weights.load_clip(str(WORLD_SAM.parent / "world-clip"), "cuda", False)
    assert not random
    return Matcher(clip, tokenizer, "cuda", cuda_graphs=True), Matcher(clip, tokenizer, "cuda", cuda_graphs=False)


@pytest.mark.parametrize("count", [1, 5, 8, 9, 32, 70])
def test_region_embeddings_equal_eager(matchers, frames, count):
    graphs, eager = matchers
    rng = np.random.default_rng(count)
    for image in frames:  # the second frame replays graphs captured on the first
        height, width = image.shape[:2]
        corners = rng.uniform(0, [width, height], (count, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(8, 200, (count, 2))], axis=1)
        got, expected = graphs.encode_regions(image, boxes), eager.encode_regions(image, boxes)
        assert got.shape == expected.shape == (count, graphs.embed_dim)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        # 70 crops are 32 + 32 + 6: two replays of the same graph, the first batch's copy kept intact.
        assert len({tuple(v) for v in got.cpu().numpy().round(4).tolist()}) == count
    assert graphs._graphs._graphs  # the graph path did run


def test_warm_up_captures_every_image_batch_size():
    from promptbox import weights
    from promptbox.matching import Matcher

    clip, tokenizer, _ = weights.load_clip(str(WORLD_SAM.parent / "world-clip"), "cuda", False)
    matcher = Matcher(clip, tokenizer, "cuda")
    matcher.warm_up_image_graphs()
    assert sorted(key[-1] for key in matcher._graphs._graphs) == [8, 16, 32]
