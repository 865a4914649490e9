"""The ONNX Runtime path (encoder_backend "onnx"): every exported graph gives torch's numbers on the committed world
weights (real MobileSAM vit_t and a real transformers CLIPModel), and the whole path gives torch's proposals.

Tolerances sit about 100x above the float drift measured here (decoder outputs ~1e-6, low-res logits ~3e-5 of
values up to ~40) and far below what a wrongly wired input gives (a swapped shared-side tensor, a missing attention
mask or the wrong pixels move outputs by whole units).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from promptbox import onnx_runtime, weights
from promptbox.config import AmgSettings, LocatorConfig
from promptbox.matching import Matcher
from promptbox.proposals import MaskProposer
from promptbox.shared_decoder import low_res_masks, two_way_transformer
from promptbox.world import generate_scene

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx", reason="exporting needs the `onnx` package (the [onnx] extra)")

WORLD_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for the module: each graph is exported once, as in use."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def world_sam():
    model, is_random = weights.load_sam(str(WORLD_WEIGHTS / "mobile_sam.pt"), "cpu", False)
    assert not is_random
    return model


@pytest.fixture(scope="module")
def world_clip():
    model, tokenizer, is_random = weights.load_clip(str(WORLD_WEIGHTS / "world-clip"), "cpu", False)
    assert not is_random
    return model, tokenizer


@pytest.fixture(scope="module")
def scene():
    return generate_scene(20261123, 0, (320, 240))


@pytest.fixture(scope="module")
def proposers(world_sam, cache):
    return (MaskProposer(world_sam, AmgSettings(), "cpu", "torch"),
            MaskProposer(world_sam, AmgSettings(), "cpu", "onnx", onnx_cache_dir=cache))


@pytest.fixture(scope="module")
def frames(proposers, scene):
    """The scene's embedding from each backend."""
    return tuple(p.embed(scene.image) for p in proposers)


def _object_points(scene) -> np.ndarray:
    """A point prompt on each object's centre (x, y), source px."""
    return np.array([[(o.box_xyxy[0] + o.box_xyxy[2]) / 2, (o.box_xyxy[1] + o.box_xyxy[3]) / 2]
                     for o in scene.objects], np.float64)


def test_encoder_matches_torch(proposers, frames):
    torch_frame, onnx_frame = frames
    grid = tuple(onnx_frame.features.shape[-2:])
    assert grid == (48, 64)  # a 4:3 world frame: exported for its own grid
    assert proposers[1].onnx_encoder_path(grid).exists()
    torch.testing.assert_close(onnx_frame.features, torch_frame.features, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("batch", [1, 3, 5])  # the export's example batch is 2: other sizes must not be baked in
def test_decoder_graphs_match_torch(world_sam, proposers, frames, scene, batch):
    proposer = proposers[1]
    points = np.resize(_object_points(scene), (batch, 2))
    with torch.inference_mode():
        shared = proposer._shared_image_side(frames[0])
        coords = torch.as_tensor(proposer.transform.apply_coords(points, frames[0].original_size), dtype=torch.float32)
        tokens = proposer._prompt_tokens(coords)
        hs, keys = two_way_transformer(world_sam, shared, tokens)
        iou = world_sam.mask_decoder.iou_prediction_head(hs[:, 0, :])
        low_res = low_res_masks(world_sam.mask_decoder, hs, keys, slice(0, 4), shared.grid)
        onnx_hs, onnx_keys, onnx_iou = proposer._transformer_and_iou(shared, tokens, slice(0, 4))
        onnx_low_res = proposer._low_res(shared, onnx_hs, onnx_keys, slice(1, 4))
    torch.testing.assert_close(onnx_hs, hs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_keys, keys, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_iou, iou, atol=1e-4, rtol=0)
    rows, cols = shared.grid
    assert (rows, cols) == (48, 64)  # a 4:3 frame: the encoder saw no padding rows
    assert onnx_low_res.shape == (batch, 3, 4 * rows, 4 * cols)  # the mask slice is honoured
    torch.testing.assert_close(onnx_low_res, low_res[:, 1:], atol=3e-3, rtol=1e-4)
    assert low_res.abs().max() > 1.0  # real logits, not a degenerate all-zero comparison


def test_full_onnx_path_gives_torchs_proposals(proposers, frames, scene):
    points = _object_points(scene)
    torch_props, onnx_props = (p.propose_points(f, points) for p, f in zip(proposers, frames, strict=True))
    assert len(torch_props) >= 3
    assert len(onnx_props) == len(torch_props)
    np.testing.assert_allclose(onnx_props.predicted_iou, torch_props.predicted_iou, atol=2e-3)
    np.testing.assert_allclose(onnx_props.stability, torch_props.stability, atol=1e-2)
    np.testing.assert_allclose(onnx_props.boxes_xyxy, torch_props.boxes_xyxy, atol=2)
    for ours, theirs in zip(onnx_props.masks.to_dense(), torch_props.masks.to_dense(), strict=True):
        assert (ours & theirs).sum() >= 0.99 * (ours | theirs).sum()  # equal up to encoder rounding at edges


def test_text_tower_matches_torch(world_clip, cache):
    model, tokenizer = world_clip
    phrases = ["mug", "red mug", "the small blue screwdriver handle"]  # different lengths: padding is exercised
    torch_vectors = Matcher(model, tokenizer, "cpu").encode_texts(phrases)
    onnx_matcher = Matcher(model, tokenizer, "cpu", backend="onnx", onnx_cache_dir=cache)
    onnx_vectors = onnx_matcher.encode_texts(phrases)
    torch.testing.assert_close(onnx_vectors, torch_vectors, atol=1e-4, rtol=0)
    # Raw projected features too, one phrase at a time and padded in a batch (the eos token's position varies).
    text_graph = onnx_matcher._onnx_graphs()[0]
    tokens = tokenizer(["a photo of a mug.", "a cropped photo of the green toy car."], padding=True,
                       return_tensors="pt")
    with torch.inference_mode():
        expected = model.get_text_features(**tokens)
    expected = expected if isinstance(expected, torch.Tensor) else expected.pooler_output
    (features,) = text_graph.run(tokens["input_ids"], tokens["attention_mask"])
    torch.testing.assert_close(features, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(features[0], features[1], atol=1e-2)


def test_image_tower_matches_torch(world_clip, cache, scene):
    model, tokenizer = world_clip
    boxes = np.array([o.box_xyxy for o in scene.objects], np.float64)
    masks = np.stack([o.mask for o in scene.objects])
    torch_matcher = Matcher(model, tokenizer, "cpu", batch_size=4)  # batches of 4 and a remainder
    onnx_matcher = Matcher(model, tokenizer, "cpu", batch_size=4, backend="onnx", onnx_cache_dir=cache)
    for region_masks in (masks, None):
        expected = torch_matcher.encode_regions(scene.image, boxes, region_masks)
        got = onnx_matcher.encode_regions(scene.image, boxes, region_masks)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # Crops of different objects differ by far more than the tolerance: a wrong crop would show.
    assert (expected[0] - expected[1:]).abs().max() > 1e-2


def test_exports_are_cached_by_weights(world_sam, world_clip, cache, frames, proposers):
    proposer = proposers[1]
    decoder, low_res = proposer._onnx["decoder (48, 64)"], proposer._onnx["low_res (48, 64)"]
    assert decoder.path.exists() and low_res.path.exists()
    assert "48x64" in decoder.path.name  # the grid's token count is traced in: one export per grid
    assert not list(cache.glob("*.partial"))  # written atomically, nothing left behind
    text, image = onnx_runtime.clip_graphs(world_clip[0], cache)
    assert text.path != image.path
    with torch.inference_mode():
        shared = proposer._shared_image_side(frames[0])
    tokens = proposer._prompt_tokens(torch.zeros(1, 2))
    again, _ = onnx_runtime.decoder_graphs(world_sam, shared, tokens, cache)
    assert again.path == decoder.path  # same weights: same file, no new export
    changed = copy.deepcopy(world_sam)
    with torch.no_grad():
        changed.mask_decoder.iou_prediction_head.layers[0].bias += 1.0
    other, _ = onnx_runtime.decoder_graphs(changed, shared, tokens, cache)
    assert other.path != decoder.path


def test_int8_backend_runs_quantised_decoder_and_towers_close_to_float(world_clip, proposers, frames, scene, cache):
    model, tokenizer = world_clip
    phrases = ["mug", "red mug", "the small blue screwdriver handle"]
    float_matcher = Matcher(model, tokenizer, "cpu", backend="onnx", onnx_cache_dir=cache)
    int8_matcher = Matcher(model, tokenizer, "cpu", backend="onnx-int8", onnx_cache_dir=cache)
    expected, got = float_matcher.encode_texts(phrases), int8_matcher.encode_texts(phrases)
    assert (expected * got).sum(-1).min() > 0.995
    assert not torch.allclose(expected, got, atol=1e-6)  # the quantised graph really ran
    boxes = np.array([o.box_xyxy for o in scene.objects], np.float64)
    masks = np.stack([o.mask for o in scene.objects])
    expected = float_matcher.encode_regions(scene.image, boxes, masks)
    got = int8_matcher.encode_regions(scene.image, boxes, masks)
    assert (expected * got).sum(-1).min() > 0.995
    for graph in int8_matcher._onnx_graphs():
        assert graph.run_path.name.endswith("_int8.onnx") and graph.run_path.exists()

    int8_proposer = MaskProposer(proposers[0].sam, AmgSettings(), "cpu", "onnx-int8", onnx_cache_dir=cache)
    points = _object_points(scene)
    float_props, int8_props = (p.propose_points(frames[1], points) for p in (proposers[1], int8_proposer))
    decoder = int8_proposer._onnx["decoder (48, 64)"]
    assert decoder.run_path.stat().st_size < 0.5 * decoder.path.stat().st_size  # int8 weights
    assert len(int8_props) == len(float_props)
    # Paired by their masks, not by list order: NMS orders by predicted IoU, and two masks 0.003 apart may swap.
    ours, theirs = (p.masks.to_dense().reshape(len(p), -1).astype(np.float32) for p in (int8_props, float_props))
    inter = ours @ theirs.T
    iou = inter / (ours.sum(1)[:, None] + theirs.sum(1)[None, :] - inter)
    pairs = iou.argmax(axis=1)
    assert iou.max(axis=1).min() >= 0.95 and len(set(pairs.tolist())) == len(pairs)
    np.testing.assert_allclose(int8_props.predicted_iou, float_props.predicted_iou[pairs], atol=0.03)


def test_int8_vectors_are_stored_apart_from_float_ones(world_clip, cache, tmp_path):
    model, tokenizer = world_clip
    names = ["mug", "spoon"]
    Matcher(model, tokenizer, "cpu", backend="onnx-int8", onnx_cache_dir=cache).encode_texts_stored(names, tmp_path)
    Matcher(model, tokenizer, "cpu").encode_texts_stored(names, tmp_path)
    assert len(list(tmp_path.glob("text-embeddings-*.pt"))) == 2


@pytest.mark.parametrize("value", ["tensorrt", "int8", "ONNX"])
def test_bad_backend_is_refused_naming_field_value_and_choices(world_clip, world_sam, value):
    accepted = r"accepted: torch, onnx, onnx-int8"
    with pytest.raises(ValueError, match=rf"backend={value!r}.*{accepted}"):
        Matcher(*world_clip, "cpu", backend=value)
    with pytest.raises(ValueError, match=rf"encoder_backend={value!r}.*{accepted}"):
        MaskProposer(world_sam, AmgSettings(), "cpu", value)
    with pytest.raises(ValueError, match=rf"encoder_backend={value!r}.*{accepted}"):
        LocatorConfig(encoder_backend=value)
