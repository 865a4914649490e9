"""MaskProposer: exact mode gives upstream AMG's masks; fast-mode pieces give well-formed proposals.

Random weights make degenerate masks (noise, stability 0, every box the whole frame), so the settings tests use
`structured_sam`: the same random decoder fed a fixed embedding of a few blobs, with its hypernetwork outputs
scaled and its upscaling made piecewise constant. Its masks are blob unions of varied boxes and stabilities, so
thresholds, NMS and the small-region clean-up all have something to decide. Upstream AMG runs on the same model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mobile_sam.predictor import SamPredictor
from mobile_sam.utils.amg import calculate_stability_score
from scipy.optimize import linear_sum_assignment

from promptbox.config import AmgSettings
from promptbox.encoder_grid import embedding_grid, mbconv_in_bands
from promptbox.full_size import resize_maps
from promptbox.map_peaks import peak_points
from promptbox.masks import BoxMasks
from promptbox.proposals import (
    LOW_RES_STABILITY_MARGIN,
    FrameEmbedding,
    MaskProposer,
    Proposals,
    packbits_rows,
    packbits_torch,
)
from promptbox.shared_decoder import low_res_masks, two_way_transformer

FRAME_W, FRAME_H = 320, 240
MATCH_IOU = 0.98


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(data.coffee(), (FRAME_W, FRAME_H), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def coffee_frame(sam_model, coffee) -> FrameEmbedding:
    """The random model's embedding of `coffee`, computed once for the tests that only decode."""
    return _proposer(sam_model).embed(coffee)


class _FixedEmbedding(torch.nn.Module):
    """Stands in for the image encoder: the same embedding whatever the pixels, so both pipelines see it."""

    def __init__(self, img_size: int, features: torch.Tensor) -> None:
        super().__init__()
        self.img_size = img_size
        self.register_buffer("features", features[None])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features.expand(pixels.shape[0], -1, -1, -1).to(pixels.dtype)


@pytest.fixture(scope="module")
def structured_sam(sam_model):
    sam = copy.deepcopy(sam_model)  # the session model stays untouched
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(256, 1, 1, generator=generator).expand(256, 64, 64).clone()
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    for cy, cx, r in [(20, 16, 9), (24, 44, 7), (44, 22, 6), (40, 48, 11), (10, 40, 4)]:
        features[:, (yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = torch.randn(256, 1, generator=generator)
    sam.image_encoder = _FixedEmbedding(sam.image_encoder.img_size, features)
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20.0)  # logits of a few units, so stability is not 0 everywhere
        for layer in sam.mask_decoder.output_upscaling:
            if isinstance(layer, torch.nn.ConvTranspose2d):  # same kernel for the 4 sub-pixels: no checkerboard
                layer.weight.copy_(layer.weight[:, :, :1, :1].expand_as(layer.weight))
    return sam.eval()


def _mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU; two empty masks count as identical."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)


def assert_same_proposals(ours: Proposals, upstream: Proposals) -> None:
    assert len(ours) == len(upstream), f"{len(ours)} masks vs upstream's {len(upstream)}"
    if len(upstream) == 0:
        return
    iou = _mask_iou(upstream.masks.to_dense(), ours.masks.to_dense())
    assert iou.max(axis=1).min() >= MATCH_IOU, "an upstream mask has no match"
    assert iou.max(axis=0).min() >= MATCH_IOU, "a mask of ours has no upstream match"
    # One-to-one pairing (identical masks can come from different prompts: their predicted IoUs tell them apart),
    # then each pair must agree on everything it carries.
    cost = (1.0 - iou) + 10.0 * np.abs(upstream.predicted_iou[:, None] - ours.predicted_iou[None, :])
    rows, pairs = linear_sum_assignment(cost)
    assert iou[rows, pairs].min() >= MATCH_IOU
    np.testing.assert_allclose(ours.boxes_xyxy[pairs], upstream.boxes_xyxy, atol=1.0)
    np.testing.assert_allclose(ours.predicted_iou[pairs], upstream.predicted_iou, atol=1e-4)
    np.testing.assert_allclose(ours.stability[pairs], upstream.stability, atol=1e-2)


def _proposer(sam, **settings) -> MaskProposer:
    # Upstream's exact list: every grid point decoded, no nested-whole restore (both are tested on their own).
    settings = AmgSettings(points_per_side=4, skip_covered_points=False, **settings)
    return MaskProposer(sam, settings, "cpu", keep_nested_wholes=False)


# ------------------------------------------------------------------------------------------- building blocks
def test_embed_matches_sam_predictor_on_a_square_frame(sam_model, coffee):
    square = np.ascontiguousarray(coffee[:, 40 : 40 + FRAME_H])
    frame = _proposer(sam_model).embed(square)
    predictor = SamPredictor(sam_model)
    predictor.set_image(square)
    assert frame.input_size == tuple(predictor.input_size) == (1024, 1024)
    torch.testing.assert_close(frame.features, predictor.features)
    assert set(frame.timings_ms) >= {"encoder"}


def test_embed_skips_the_padding_of_a_4_3_frame(sam_model, coffee, coffee_frame):
    """1024x768 of image: the encoder sees 768 rows, not upstream's 1024, and gives 48 rows of cells; a cell keeps
    upstream's embedding except near the edge where upstream's padding began (TinyViT's windows and convolutions)."""
    frame = coffee_frame
    predictor = SamPredictor(sam_model)
    predictor.set_image(coffee)
    assert frame.original_size == (FRAME_H, FRAME_W)
    assert frame.input_size == tuple(predictor.input_size) == (768, 1024)
    assert frame.features.shape == (1, 256, 48, 64) and predictor.features.shape == (1, 256, 64, 64)
    # Rows far from the edge: the same vectors to 0.5% (measured: under 0.2%; a wrong layout of rows, columns or
    # positions is off by 100%). Not bit-equal: stage 3's window-and-convolution blocks carry the edge upwards.
    top, want = frame.features[0, :, :16], predictor.features[0, :, :16]
    assert ((top - want).norm(dim=0) / want.norm(dim=0)).max() < 5e-3
    near_edge = F.cosine_similarity(frame.features[..., 40:, :], predictor.features[..., 40:48, :], dim=1)
    assert near_edge.mean() > 0.5  # changed by the padding that is no longer there, not unrelated


def test_decoder_matches_library_mask_decoder(sam_model, coffee_frame):
    proposer = _proposer(sam_model)
    frame = coffee_frame
    points = np.random.default_rng(0).uniform([0, 0], [FRAME_W, FRAME_H], size=(5, 2))
    coords = torch.as_tensor(proposer.transform.apply_coords(points, frame.original_size), dtype=torch.float32)
    decoder, prompt_encoder = sam_model.mask_decoder, sam_model.prompt_encoder
    with torch.inference_mode():
        labels = torch.ones(len(coords), 1, dtype=torch.int)
        sparse, dense = prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
        rows, cols = frame.features.shape[-2:]  # 48x64: the library's decoder takes any grid, cut to it
        pe = prompt_encoder.get_dense_pe()[..., :rows, :cols]
        want_masks, want_iou = decoder(frame.features, pe, sparse, dense[..., :rows, :cols], True)
        shared = proposer._shared_image_side(frame)
        hs, keys = two_way_transformer(sam_model, shared, proposer._prompt_tokens(coords))
        got_masks = low_res_masks(decoder, hs, keys, slice(1, 4), shared.grid)
        got_iou = decoder.iou_prediction_head(hs[:, 0])[:, 1:]
    torch.testing.assert_close(got_iou, want_iou, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got_masks, want_masks, atol=1e-4, rtol=1e-4)


def test_full_size_logits_match_postprocess_masks(sam_model):
    low_res = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(2))
    for input_size, original_size in [((768, 1024), (FRAME_H, FRAME_W)), ((1024, 683), (300, 200))]:
        maps = resize_maps(input_size, original_size, (64, 64), "cpu")
        got = maps.to_rows @ (low_res[:, : maps.rows, : maps.cols] @ maps.to_cols)
        want = sam_model.postprocess_masks(low_res[:, None], input_size, original_size)[:, 0]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("grid, input_size, original_size", [((48, 64), (768, 1024), (FRAME_H, FRAME_W)),
                                                             ((64, 43), (1024, 683), (300, 200))])
def test_full_size_logits_of_a_frame_shaped_grid(grid, input_size, original_size):
    """postprocess_masks' steps on the grid's own low-res size: 4x up to the encoder's input, crop, resize."""
    low_res = torch.randn(3, 1, 4 * grid[0], 4 * grid[1], generator=torch.Generator().manual_seed(3))
    maps = resize_maps(input_size, original_size, grid, "cpu")
    got = maps.to_rows @ (low_res[:, 0, : maps.rows, : maps.cols] @ maps.to_cols)
    up = F.interpolate(low_res, (16 * grid[0], 16 * grid[1]), mode="bilinear", align_corners=False)
    want = F.interpolate(up[..., : input_size[0], : input_size[1]], original_size, mode="bilinear",
                         align_corners=False)[:, 0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_embedding_grid_is_the_frames_whole_cells(sam_model, structured_sam):
    encoder = sam_model.image_encoder  # TinyViT
    assert embedding_grid(encoder, (768, 1024)) == (48, 64)  # 4:3
    assert embedding_grid(encoder, (576, 1024)) == (36, 64)  # 16:9
    assert embedding_grid(encoder, (1024, 683)) == (64, 43)  # a part cell counts as a cell
    assert embedding_grid(encoder, (1024, 1024)) == (64, 64)
    # Another encoder (the stand-in here; SAM's ViTs have absolute positions): the square, as upstream.
    assert embedding_grid(structured_sam.image_encoder, (768, 1024)) == (64, 64)


def test_low_res_stability_is_within_the_margin(structured_sam):
    """The low-res pre-check may only reject masks that cannot pass at full size: its error must be small."""
    proposer = _proposer(structured_sam)
    frame = proposer.embed(np.zeros((FRAME_H, FRAME_W, 3), np.uint8))
    points = np.random.default_rng(3).uniform([0, 0], [FRAME_W, FRAME_H], size=(16, 2))
    coords = torch.as_tensor(proposer.transform.apply_coords(points, frame.original_size), dtype=torch.float32)
    with torch.inference_mode():
        shared = proposer._shared_image_side(frame)
        hs, keys = two_way_transformer(structured_sam, shared, proposer._prompt_tokens(coords))
        low_res = low_res_masks(structured_sam.mask_decoder, hs, keys, slice(1, 4), shared.grid).flatten(0, 1)
        maps = resize_maps(frame.input_size, frame.original_size, shared.grid, "cpu")
        full = maps.to_rows @ (low_res[:, : maps.rows, : maps.cols] @ maps.to_cols)
        at_full = calculate_stability_score(full, 0.0, 1.0)
        at_low = calculate_stability_score(low_res[:, : maps.rows, : maps.cols], 0.0, 1.0)
    assert at_full.max() > 0.5, "the structured model should make some stable masks"
    assert (at_full - at_low).abs().max() < LOW_RES_STABILITY_MARGIN / 4


# ---------------------------------------------------------------------------------------- exact vs upstream
def test_exact_matches_upstream_every_mask(sam_model, coffee):
    """Real (random) encoder, nothing filtered or suppressed: all 27 masks must match pixel for pixel. A square
    frame, where the encoder's input is upstream's (a 4:3 frame skips upstream's padding: encoder_grid)."""
    coffee = np.ascontiguousarray(coffee[:, 40 : 40 + FRAME_H])
    settings = AmgSettings(
        points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0, min_mask_region_area=0,
        skip_covered_points=False,
    )
    proposer = MaskProposer(sam_model, settings, "cpu", keep_nested_wholes=False)
    ours = proposer.propose(proposer.embed(coffee))
    upstream = proposer.propose_upstream(coffee)
    assert len(upstream) == 3 * 3 * 3
    assert_same_proposals(ours, upstream)
    # Both paths hold their masks cropped and packed, never as an (N, H, W) stack.
    assert isinstance(ours.masks, BoxMasks) and ours.masks.shape == (27, FRAME_H, FRAME_H)
    assert isinstance(upstream.masks, BoxMasks) and upstream.masks.shape == (27, FRAME_H, FRAME_H)
    assert ours.boxes_xyxy.dtype == np.float32
    assert {"decoder", "upscale", "postprocess"} <= set(ours.timings_ms)


@pytest.mark.parametrize(
    "settings",
    [
        # every mask, NMS at upstream's default: only distinct boxes remain
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=0),
        # IoU and stability thresholds that keep some masks and drop others, no NMS
        dict(pred_iou_thresh=0.05, stability_score_thresh=0.85, box_nms_thresh=1.0, min_mask_region_area=0),
        dict(pred_iou_thresh=-0.1, stability_score_thresh=0.6, min_mask_region_area=0),
        # small-region clean-up (holes and islands below the area) and its re-NMS: changes one mask, then many
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.95, min_mask_region_area=400),
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0, min_mask_region_area=1500),
        # the seed's settings: with these weights few or no masks pass
        dict(),
    ],
    ids=["nms", "thresholds", "stability", "small-regions", "small-regions-all", "seed"],
)
def test_exact_matches_upstream(structured_sam, settings):
    proposer = _proposer(structured_sam, **settings)
    image = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    upstream = proposer.propose_upstream(image)
    ours = proposer.propose(proposer.embed(image))
    assert_same_proposals(ours, upstream)


def test_filters_keep_some_and_drop_some(structured_sam):
    """Guards the parametrised test above against testing nothing: its thresholds must bite."""
    proposer = _proposer(structured_sam, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
                         min_mask_region_area=0)
    frame = proposer.embed(np.zeros((FRAME_H, FRAME_W, 3), np.uint8))
    everything = proposer.propose(frame)
    assert len(everything) == 48
    boxes = {tuple(b) for b in everything.boxes_xyxy.tolist()}
    assert len(boxes) > 2, "masks should not all share one box"
    kept = (everything.predicted_iou > 0.05) & (everything.stability >= 0.85)
    assert 0 < kept.sum() < 48


def test_crop_layers_delegate_to_upstream(structured_sam, monkeypatch):
    settings = AmgSettings(points_per_side=2, crop_n_layers=1)
    proposer = MaskProposer(structured_sam, settings, "cpu")
    image = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    frame = proposer.embed(image)
    assert frame.image_rgb is not None  # crops need the frame itself
    seen = []
    monkeypatch.setattr(proposer, "propose_upstream", lambda img: seen.append(img) or "upstream's")
    assert proposer.propose(frame) == "upstream's" and seen[0] is frame.image_rgb
    without_image = FrameEmbedding(torch.zeros(1, 256, 64, 64), (FRAME_H, FRAME_W), (768, 1024))
    with pytest.raises(ValueError, match="crop_n_layers"):
        proposer.propose(without_image)
    assert _proposer(structured_sam).embed(image).image_rgb is None  # not kept without crops


# --------------------------------------------------------------------------------------------------- fast mode
def test_propose_points_shapes(sam_model, coffee_frame):
    proposer = _proposer(sam_model)
    proposer.point_iou_floor = proposer.point_stability_floor = 0.0  # random weights: nothing would pass a floor
    frame = coffee_frame
    points = np.array([[40.0, 30.0], [160.0, 120.0], [300.0, 200.0]])
    out = proposer.propose_points(frame, points)
    assert 1 <= len(out) <= 3 * len(points)
    assert isinstance(out.masks, BoxMasks) and out.masks.shape == (len(out), FRAME_H, FRAME_W)
    assert out.boxes_xyxy.shape == (len(out), 4) and out.boxes_xyxy.dtype == np.float32
    assert out.predicted_iou.shape == out.stability.shape == (len(out),)
    x0, y0, x1, y1 = out.boxes_xyxy.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= FRAME_W - 1).all() and (y1 <= FRAME_H - 1).all()
    assert (x0 <= x1).all() and (y0 <= y1).all()

    single = proposer.propose_points(frame, points, multimask=False)
    assert 1 <= len(single) <= len(points)

    proposer.point_iou_floor = 0.99  # a floor no random-weight mask reaches: empty, but well-formed
    empty = proposer.propose_points(frame, points)
    assert len(empty) == 0 and empty.masks.shape == (0, FRAME_H, FRAME_W) and isinstance(empty.masks, BoxMasks)
    assert len(proposer.propose_points(frame, np.zeros((0, 2)))) == 0


def test_propose_points_decodes_like_upstream_at_a_point(structured_sam):
    """One point, multimask, no floor and no NMS: the masks SamPredictor.predict gives for that point."""
    proposer = _proposer(structured_sam, box_nms_thresh=1.0)
    proposer.point_iou_floor = proposer.point_stability_floor = 0.0
    image = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    point = np.array([[100.0, 80.0]])
    ours = proposer.propose_points(proposer.embed(image), point)
    predictor = SamPredictor(structured_sam)
    predictor.set_image(image)
    masks, iou, _ = predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True)
    assert len(ours) == 3
    upstream = Proposals(masks, np.zeros((3, 4), np.float32), iou, np.zeros(3, np.float32))
    ours.boxes_xyxy[:] = 0.0
    ours.stability[:] = 0.0
    assert_same_proposals(ours, upstream)


def test_peak_points_finds_planted_maxima():
    yy, xx = np.mgrid[0:24, 0:32]
    planted = [(5, 6, 1.0), (18, 25, 0.8), (4, 27, 0.6)]  # (row, col, height)
    heat = sum(h * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 4.0) for r, c, h in planted)
    heat = heat + 0.02 * np.random.default_rng(0).random(heat.shape)  # small bumps: local maxima but weak
    points = peak_points(heat, (480, 640), 3)
    assert points.shape == (3, 2) and points.dtype == np.float32
    expected = np.array([[(c + 0.5) * 20.0, (r + 0.5) * 20.0] for r, c, _ in planted])
    np.testing.assert_allclose(points, expected, atol=20.0)  # within one cell, strongest first

    # Peaks are spread out: a shoulder next to the strongest peak is not taken before the other peaks.
    shouldered = heat.copy()
    shouldered[5, 8] = shouldered[5, 6] - 0.01
    shouldered[5, 7] = shouldered[5, 8] - 0.5
    assert np.abs(peak_points(shouldered, (480, 640), 3) - expected).max() <= 20.0

    # Asking for more points than there are peaks still gives k distinct points inside the frame.
    many = peak_points(heat, (480, 640), 10)
    assert many.shape == (10, 2) and len({tuple(p) for p in many.tolist()}) == 10
    assert (many >= 0).all() and (many[:, 0] <= 640).all() and (many[:, 1] <= 480).all()
    assert peak_points(np.ones((2, 2)), (10, 10), 9).shape == (4, 2)  # never more than the cells


# -------------------------------------------------------------------------------------------------------- onnx
# The ONNX graphs' equivalence with torch is tests/test_onnx.py's, on the world weights.
def test_onnx_backend_without_onnx_package_says_what_to_do(sam_model, coffee, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    proposer = MaskProposer(sam_model, AmgSettings(), "cpu", "onnx", onnx_cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match="onnx"):
        proposer.embed(coffee)


@pytest.mark.parametrize("length", [16, 13, 640 * 480])
def test_packbits_torch_is_numpys_packbits(length):
    flat = torch.rand(5, length, generator=torch.Generator().manual_seed(length)) > 0.5
    assert np.array_equal(packbits_torch(flat).numpy(), np.packbits(flat.numpy(), axis=1))
    assert np.array_equal(packbits_rows(flat), np.packbits(flat.numpy(), axis=1))


def test_prompt_tokens_equal_the_prompt_encoders(sam_model):
    # _prompt_tokens sums the point embedding itself (no boolean indexing, so a CUDA graph can hold it); the values
    # must be the prompt encoder's, bit for bit.
    proposer = MaskProposer(sam_model, AmgSettings(), "cpu")
    coords = torch.tensor([[0.0, 0.0], [512.3, 100.7], [1023.0, 767.5], [5.0, 900.0]])
    labels = torch.ones(len(coords), 1, dtype=torch.int)
    with torch.inference_mode():
        sparse, _ = sam_model.prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
        decoder = sam_model.mask_decoder
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        expected = torch.cat((output_tokens.unsqueeze(0).expand(len(coords), -1, -1), sparse), dim=1)
        assert torch.equal(proposer._prompt_tokens(coords), expected)


@pytest.mark.parametrize("band", [1, 7, 32, 500])
def test_mbconv_in_bands_is_the_block(band):
    # The first stage's activations of a 1024 x 768 input (48 x 64 cells: 192 x 256 at this stage), through both
    # MBConv blocks: bands of 1 row (every band edge), 7 (uneven), 32 (the product's) and more than the height.
    # Trained weights: a random-init MBConv's last BatchNorm starts at zero (TinyViT's init), so its output would
    # be its shortcut's whatever the bands did.
    from promptbox import weights

    sam, _ = weights.load_sam(str(Path(__file__).resolve().parents[2] / "weights" / "world" / "mobile_sam.pt"), "cpu",
                              False)
    encoder = sam.image_encoder
    pixels = torch.randn(1, 3, 768, 1024, generator=torch.Generator().manual_seed(band))
    with torch.inference_mode():
        x = encoder.patch_embed(pixels)
        for block in encoder.layers[0].blocks:
            expected = block(x)
            got = mbconv_in_bands(block, x, band)
            assert (expected - torch.nn.functional.gelu(x)).abs().max() > 0.1  # the block does change its input
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            assert got.shape == (1, 64, 192, 256)
            x = expected
