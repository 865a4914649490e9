"""Mask proposals from MobileSAM: upstream's automatic mask generator, and the same masks with much less work.

Upstream decodes every point prompt against its own copy of the 256x64x64 image embedding, upsamples all three
masks of every prompt to full size, and only then filters them. Here the image side that every prompt shares is
computed once per frame, the prompt side is batched against it, the filters run before the upsampling, and only
the masks that pass are brought to full size (the decoder's arithmetic: shared_decoder.py). The modules and weights
are mobile_sam's own; only the order of the arithmetic around them changes, so the masks are upstream's up to float
rounding (tests/test_proposals.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mobile_sam.automatic_mask_generator import SamAutomaticMaskGenerator
from mobile_sam.modeling import Sam
from mobile_sam.utils.amg import (
    build_all_layer_point_grids,
    calculate_stability_score,
)
from mobile_sam.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms

from promptbox import full_size, nested_wholes, onnx_runtime, small_regions
from promptbox.batch_graphs import SIZES as GRAPH_SIZES
from promptbox.batch_graphs import BatchGraphs
from promptbox.config import ENCODER_BACKENDS, AmgSettings
from promptbox.encoder_grid import (
    CELL_PX,
    FrameShapedEncoder,
    embedding_grid,
    grid_of,
)
from promptbox.masks import BoxMasks
from promptbox.shared_decoder import SharedImageSide, low_res_masks, shared_image_side, two_way_transformer

# Stability is first computed on the low-res logits, as a cheap pre-check: a mask this far below the threshold there
# is dropped; the rest are decided on full-size logits, as upstream does. Low-res and full-size scores differ by
# under 0.01 on the test masks (tests/test_proposals.py holds them under a quarter of this margin).
LOW_RES_STABILITY_MARGIN = 0.1
# Prompts decoded together (at most points_per_batch). On CPU small batches win: a few prompts' 4-8 MB tensors stay
# in cache and below glibc's mmap threshold, so freed memory is reused rather than page-faulted in again; GPUs want
# the whole points_per_batch.
_CPU_BATCH = 4
# On a GPU, at most this many full-size logits at a time (236 MB of float32): a 64-prompt batch's 192 masks of a
# 640x480 frame in one go, larger frames in parts.
_DEVICE_LOGITS = 192 * 640 * 480


@dataclass
class FrameEmbedding:
    """One frame's image embedding, and the geometry that maps it back to the frame."""

    features: torch.Tensor  # (1, 256, rows, cols): 48 rows of 64 cells for a 4:3 frame (encoder_grid)
    original_size: tuple[int, int]  # (H, W) of the frame
    input_size: tuple[int, int]  # (H, W) of the frame resized to the encoder's longest side, before padding
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The frame itself, kept only for crop_n_layers > 0 (crops need their own embeddings); None otherwise.
    image_rgb: np.ndarray | None = field(default=None, repr=False)
    # Exact-mode proposals per AMG settings: they don't depend on the command, so later commands on the same frame
    # reuse them (a planner asking for several objects, the eval harness, the node's repeated goals on one frame).
    exact_proposals: dict = field(default_factory=dict, repr=False)
    # The frame's CLIP patch tokens (matching.PatchTokens), for fast mode's map and the matching shortlist; the
    # Locator fills it once per frame.
    patch_tokens: object | None = field(default=None, repr=False)
    # The frame's CLIP window embeddings (window_map.WindowEmbeddings), for fast mode's window map; the Locator
    # fills it once per frame.
    windows: object | None = field(default=None, repr=False)
    # On a GPU, the decoder's image side that every point prompt shares (shared_decoder.SharedImageSide, about 11 MB
    # at 640x480), computed when the frame is embedded and kept with the model it came from; on a CPU it is
    # recomputed per call, which keeps RSS down.
    decoder_side: tuple[object, object] | None = field(default=None, repr=False)


@dataclass
class Proposals:
    """Candidate object masks in source pixels; boxes are xyxy with inclusive max, as upstream's."""

    # Each mask cropped to its box and bit-packed: the Locator caches these per frame, and an (N, H, W) bool stack
    # of hundreds of masks would cost hundreds of MB.
    masks: BoxMasks
    boxes_xyxy: np.ndarray  # (N, 4) float32
    predicted_iou: np.ndarray  # (N,) float32
    stability: np.ndarray  # (N,) float32
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompts_decoded: int | None = None  # point prompts the decoder ran for these (None: not counted, e.g. upstream)

    def __post_init__(self) -> None:
        if not isinstance(self.masks, BoxMasks):  # an (N, H, W) stack, as SamPredictor returns: stored cropped
            self.masks = BoxMasks.from_dense(np.asarray(self.masks, dtype=bool))

    def __len__(self) -> int:
        return len(self.boxes_xyxy)

    def plus(self, other: Proposals) -> Proposals:
        """These proposals followed by `other`'s (one frame), with these timings."""
        return Proposals(
            BoxMasks.concatenate([self.masks, other.masks]),
            np.concatenate([self.boxes_xyxy, other.boxes_xyxy]),
            np.concatenate([self.predicted_iou, other.predicted_iou]),
            np.concatenate([self.stability, other.stability]),
            dict(self.timings_ms),
            None if self.prompts_decoded is None else self.prompts_decoded + (other.prompts_decoded or 0),
        )

    def subset(self, indices: np.ndarray) -> Proposals:
        """These proposals at `indices` only (same timings): what the matching shortlist hands on."""
        return Proposals(
            self.masks[indices],
            self.boxes_xyxy[indices],
            self.predicted_iou[indices],
            self.stability[indices],
            dict(self.timings_ms),
            self.prompts_decoded,
        )


@dataclass
class _Filter:
    """Which decoded masks go on to full size. AMG's rule is strict for IoU and off at thresholds <= 0."""

    iou: float
    stability: float
    iou_strict: bool = True

    def keep_iou(self, iou: torch.Tensor) -> torch.Tensor:
        if self.iou <= 0.0:
            return torch.ones_like(iou, dtype=torch.bool)
        return iou > self.iou if self.iou_strict else iou >= self.iou


@dataclass
class _Decoded:
    """Masks that passed the filters, full size and bit-packed (8x smaller), with their scores."""

    packed: list[np.ndarray] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)
    iou: list[torch.Tensor] = field(default_factory=list)
    stability: list[torch.Tensor] = field(default_factory=list)
    prompts: list[np.ndarray] = field(default_factory=list)  # which point prompt each mask came from
    levels: list[np.ndarray] = field(default_factory=list)  # and which of its mask tokens (0: the first decoded)
    prompts_decoded: int = 0
    # On a GPU the masks stay there, full size ((M, H, W) bool each), and are post-processed there: packing them
    # and unpacking them on the host cost more than the GPU's work. `packed` then stays empty.
    dense: list[torch.Tensor] = field(default_factory=list)

    def snapshot(self) -> _Decoded:
        """What is decoded now, unchanged by later decoding (the lists are copied, their arrays shared)."""
        return _Decoded(list(self.packed), list(self.boxes), list(self.iou), list(self.stability),
                        list(self.prompts), list(self.levels), self.prompts_decoded, list(self.dense))

    def finest_union(self, since: int, frame_size: tuple[int, int]) -> torch.Tensor | None:
        """(H, W) bool: the union of the masks decoded after the first `since` batches that are their prompt's
        finest level (mask token 0); None if there is none. On the masks' device."""
        if len(self.levels) == since:
            return None
        finest = np.flatnonzero(np.concatenate(self.levels[since:]) == 0)
        if len(finest) == 0:
            return None
        if self.dense:
            stack = torch.cat(self.dense[since:])
            return stack[torch.as_tensor(finest, device=stack.device)].any(dim=0)
        height, width = frame_size
        union = np.bitwise_or.reduce(np.concatenate(self.packed[since:])[finest], axis=0)  # OR of bits = union
        return torch.from_numpy(np.unpackbits(union, count=height * width).reshape(height, width).view(bool))


class MaskProposer:
    """Image embedding and mask proposals for one MobileSAM model. Not thread-safe; the Locator serialises calls."""

    def __init__(
        self,
        sam: Sam,
        settings: AmgSettings | None = None,
        device: str = "cpu",
        encoder_backend: str = "torch",
        *,
        point_iou_floor: float = 0.5,
        point_stability_floor: float = 0.5,
        onnx_cache_dir: str | Path | None = None,
        keep_nested_wholes: bool = True,
        cuda_graphs: bool = True,
    ) -> None:
        if encoder_backend not in ENCODER_BACKENDS:
            raise ValueError(
                f"encoder_backend={encoder_backend!r} is not supported; accepted: {', '.join(ENCODER_BACKENDS)}"
            )
        self.sam = sam.to(device).eval()
        self.settings = settings or AmgSettings()  # may be replaced between calls (the bench does)
        self.device = device
        self.encoder_backend = encoder_backend
        # propose_points' light floor: a point prompt's masks below these are not objects worth matching.
        self.point_iou_floor = point_iou_floor
        self.point_stability_floor = point_stability_floor
        # Box NMS compares boxes, and an elongated whole (a screwdriver) has nearly its long part's box: NMS then
        # drops the whole and only the part is left to match. Masks that NMS removed but that contain a kept mask
        # are restored (upstream AMG does not do this; False gives upstream's exact list).
        self.keep_nested_wholes = keep_nested_wholes
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self._onnx_cache_dir = Path(onnx_cache_dir) if onnx_cache_dir else onnx_runtime.default_cache_dir()
        self._onnx: dict[str, onnx_runtime.OnnxGraph] = {}  # graph name -> graph, built on first use
        self._resize_matrices: dict[tuple, full_size.ResizeMaps] = {}
        # On a GPU, the prompt side of the decoder replays CUDA graphs (batch_graphs); False: eager launches.
        self.cuda_graphs = cuda_graphs
        self._graphs: BatchGraphs | None = None
        # Called before each decode batch; it may raise to stop the call (a cancelled ROS goal stops within a batch).
        self.on_batch: Callable[[], None] | None = None
        # On a GPU, decoded masks stay there at full size and are filtered and post-processed there (_Decoded.dense);
        # on the host they are filtered before upscaling and kept bit-packed. Tests switch it to compare the two.
        self.masks_on_device = str(device).startswith("cuda")

    @property
    def decode_batch(self) -> int:
        """Point prompts decoded together: points_per_batch, at most _CPU_BATCH on CPU."""
        batch = max(1, self.settings.points_per_batch)
        return batch if str(self.device).startswith("cuda") else min(batch, _CPU_BATCH)

    # ----------------------------------------------------------------------------------------------- embedding
    def embed(self, image_rgb: np.ndarray) -> FrameEmbedding:
        """The frame's image embedding: resize to the encoder's longest side, normalise, pad to whole 16 px cells
        (not to the square: encoder_grid), encode."""
        image = _check_rgb(image_rgb)
        started = time.perf_counter()
        resized = self.transform.apply_image(image)  # PIL resize, exactly as SamPredictor.set_image
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        input_size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        with torch.inference_mode():
            grid = embedding_grid(self.sam.image_encoder, input_size)
            # preprocess normalises, then pads with zeros to the square: the grid's corner of it is the same.
            pixels = self.sam.preprocess(pixels)[..., : CELL_PX * grid[0], : CELL_PX * grid[1]]
            prepared = time.perf_counter()
            features = self._encode(pixels, grid)
        _sync(self.device)
        done = time.perf_counter()
        keep_image = image if self.settings.crop_n_layers > 0 else None
        frame = FrameEmbedding(
            features=features,
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=input_size,
            timings_ms={"preprocess": (prepared - started) * 1e3, "encoder": (done - prepared) * 1e3},
            image_rgb=keep_image,
        )
        if self.masks_on_device:  # on a GPU the decoder's share of the frame is kept too, so no goal pays for it
            with torch.inference_mode():
                self._shared_image_side(frame)
            _sync(self.device)
            frame.timings_ms["decoder_side"] = (time.perf_counter() - done) * 1e3
        return frame

    def _encode(self, pixels: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        encoder = self.sam.image_encoder
        side = encoder.img_size // CELL_PX
        if self.encoder_backend == "torch":
            return encoder(pixels) if grid == (side, side) else FrameShapedEncoder(encoder, grid)(pixels)
        name = f"encoder {grid}"
        if name not in self._onnx:
            self._onnx[name] = onnx_runtime.encoder_graph(self.sam, self._onnx_cache_dir, self.device, grid)
        (features,) = self._onnx[name].run(pixels.float())
        return features.to(self.device)

    def onnx_encoder_path(self, grid: tuple[int, int] | None = None) -> Path:
        """Where the ONNX export of this model's image encoder for `grid` (default: the square) is cached: keyed by
        the weights and the grid, not the file."""
        return onnx_runtime.encoder_graph(self.sam, self._onnx_cache_dir, grid=grid).path

    def _transformer_and_iou(
        self, shared: SharedImageSide, tokens: torch.Tensor, mask_slice: slice
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hs, keys, iou of the selected mask tokens) of a batch of prompts, in torch or ONNX Runtime."""
        if self.encoder_backend == "torch":
            hs, keys = two_way_transformer(self.sam, shared, tokens)
            return hs, keys, self.sam.mask_decoder.iou_prediction_head(hs[:, 0, :])[:, mask_slice]
        hs, keys, iou = self._decoder_graphs(shared, tokens)[0].run(
            shared.src, shared.pe, shared.keys_token_to_image, shared.values_token_to_image,
            shared.queries_image_to_token, tokens,
        )
        return hs.to(self.device), keys.to(self.device), iou[:, mask_slice].to(self.device)

    def warm_up_decoder(self, frame: FrameEmbedding) -> None:
        """Decode one batch of every size a graph is captured for (batch_graphs.SIZES up to the decode batch), so
        that no goal pays for a capture; on CPU, no batch is that large and nothing runs."""
        sizes = [size for size in GRAPH_SIZES if size <= self.decode_batch]
        if not sizes:
            return
        height, width = frame.input_size
        with torch.inference_mode():
            shared = self._shared_image_side(frame)
            for size in sizes:
                centre = torch.tensor([[width / 2, height / 2]], device=self.device).expand(size, 2)
                self._prompt_side(shared, centre, slice(1, self.sam.mask_decoder.num_mask_tokens))

    def _prompt_side(self, shared: SharedImageSide, coords: torch.Tensor, mask_slice: slice
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hs, keys, iou) of a batch of point prompts (input-frame coords); on a GPU with the torch backend, a CUDA
        graph's replay (batch_graphs), whose outputs are valid until the next batch."""
        def forward(side: SharedImageSide, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return self._transformer_and_iou(side, self._prompt_tokens(points), mask_slice)

        if self.cuda_graphs and self.encoder_backend == "torch" and str(self.device).startswith("cuda"):
            if self._graphs is None:
                self._graphs = BatchGraphs(self.device)
            return self._graphs.run(shared, coords, (shared.grid, mask_slice.start, mask_slice.stop), forward)
        return forward(shared, coords)

    def _low_res(self, shared: SharedImageSide, hs: torch.Tensor, keys: torch.Tensor, mask_slice: slice
                 ) -> torch.Tensor:
        """(B, M, 4*rows, 4*cols) low-res mask logits of the selected mask tokens, in torch or ONNX Runtime."""
        if self.encoder_backend == "torch":
            return low_res_masks(self.sam.mask_decoder, hs, keys, mask_slice, shared.grid)
        (low_res,) = self._onnx[f"low_res {shared.grid}"].run(hs, keys)  # _transformer_and_iou built it
        return low_res[:, mask_slice].to(self.device)

    def _decoder_graphs(self, shared: SharedImageSide, tokens: torch.Tensor):
        decoder, low_res = f"decoder {shared.grid}", f"low_res {shared.grid}"
        if decoder not in self._onnx:
            self._onnx[decoder], self._onnx[low_res] = onnx_runtime.decoder_graphs(
                self.sam, shared, tokens, self._onnx_cache_dir, self.device, int8=self.encoder_backend == "onnx-int8"
            )
        return self._onnx[decoder], self._onnx[low_res]

    # ------------------------------------------------------------------------------------------ exact (AMG)
    def propose(self, frame: FrameEmbedding) -> Proposals:
        """Upstream AMG's masks for this frame (same settings, same filters, same NMS), with far less decoding."""
        *_, last = self.grid_stages(frame)
        return last()

    def grid_stages(self, frame: FrameEmbedding) -> Iterator[Callable[[], Proposals]]:
        """propose(frame)'s grid decoded coarse to fine: after each stage, a function that gives the proposals of
        every point decoded so far (the whole frame is covered from the first stage on, coarsely); its
        post-processing runs only when called. The last stage's is propose(frame)'s; a caller that stops early
        skips the finer stages' decoding. Crops and `skip_covered_points: false` decode in one stage."""
        s = self.settings
        if s.crop_n_layers > 0:
            # Crops need embeddings of their own; upstream does that, and the seed never used crops.
            if frame.image_rgb is None:
                raise ValueError("crop_n_layers > 0 needs the frame's image; embed it with these settings")
            image = frame.image_rgb
            yield lambda: self.propose_upstream(image)
            return
        timings: dict[str, float] = {}
        height, width = frame.original_size
        grid = build_all_layer_point_grids(s.points_per_side, 0, s.crop_n_points_downscale_factor)[0]
        points = grid * np.array([[width, height]])
        rule = _Filter(s.pred_iou_thresh, s.stability_score_thresh, iou_strict=True)
        if s.skip_covered_points:
            stages = self._decode_coarse_to_fine(frame, points, s.points_per_side, rule, timings)
        else:
            decoded = _Decoded()
            self._decode(frame, points, rule, multimask=True, timings=timings, out=decoded)
            stages = iter([decoded])
        for decoded in stages:
            # The decoding's timings so far (the whole grid's, at the last stage), and this stage's post-processing.
            yield functools.partial(self._finish_stage, frame, decoded.snapshot(), dict(timings))

    def _finish_stage(self, frame: FrameEmbedding, decoded: _Decoded, timings: dict[str, float]) -> Proposals:
        s = self.settings
        proposals = self._finish(frame, decoded, s.box_nms_thresh, s.min_mask_region_area, timings)
        proposals.prompts_decoded = decoded.prompts_decoded
        return proposals

    def _decode_coarse_to_fine(
        self, frame: FrameEmbedding, points: np.ndarray, side: int, rule: _Filter, timings: dict[str, float]
    ) -> Iterator[_Decoded]:
        """Decode the grid's points coarse to fine, skipping each point that lies inside the finest kept mask of a
        point decoded before it (a point in a segment already found would mostly repeat that segment's masks).
        Yields the masks decoded so far after each stage that decoded any point (one growing _Decoded)."""
        height, width = frame.original_size
        out = _Decoded()
        shared = None
        # Points this close to a segment's edge are still decoded: there SAM's answer can flip to the neighbour
        # across the edge. Half the grid spacing: a point inside by at least that is no boundary point of the grid.
        margin = int(0.5 * min(height, width) / side)
        cols = np.clip(points[:, 0].astype(np.int64), 0, width - 1)
        rows = np.clip(points[:, 1].astype(np.int64), 0, height - 1)
        covered = np.zeros(len(points), bool)  # per grid point: inside a segment already found
        for stage in coarse_to_fine(side):
            pending = list(stage)
            decoded_before = out.prompts_decoded
            while pending:
                # Fill a whole decode batch with points still uncovered (small batches waste the decoder's time),
                # then let that batch's segments cover the points after it.
                batch = []
                while pending and len(batch) < self.decode_batch:
                    point = pending.pop(0)
                    if not covered[point]:
                        batch.append(point)
                if not batch:
                    break
                already = len(out.levels)  # batches so far (masks are packed or dense)
                ids = np.array(batch)
                shared = self._decode(frame, points[ids], rule, True, timings, out=out, point_ids=ids, shared=shared)
                _cover_finest(covered, rows, cols, (height, width), out, already, margin)
            if out.prompts_decoded > decoded_before:  # the first stage always does: nothing is covered yet
                yield out

    def propose_upstream(self, image_rgb: np.ndarray) -> Proposals:
        """The seed: upstream SamAutomaticMaskGenerator(settings).generate, as Proposals."""
        image = _check_rgb(image_rgb)
        s = self.settings
        generator = SamAutomaticMaskGenerator(
            self.sam,
            points_per_side=s.points_per_side,
            points_per_batch=s.points_per_batch,
            pred_iou_thresh=s.pred_iou_thresh,
            stability_score_thresh=s.stability_score_thresh,
            stability_score_offset=s.stability_score_offset,
            box_nms_thresh=s.box_nms_thresh,
            crop_n_layers=s.crop_n_layers,
            crop_nms_thresh=s.crop_nms_thresh,
            crop_overlap_ratio=s.crop_overlap_ratio,
            crop_n_points_downscale_factor=s.crop_n_points_downscale_factor,
            min_mask_region_area=s.min_mask_region_area,
        )
        encoder_ms = [0.0]
        set_image = generator.predictor.set_image

        def timed_set_image(*args, **kwargs):  # only to split the encoder's share out of the total
            started = time.perf_counter()
            set_image(*args, **kwargs)
            _sync(self.device)
            encoder_ms[0] += (time.perf_counter() - started) * 1e3

        generator.predictor.set_image = timed_set_image
        started = time.perf_counter()
        records = generator.generate(image)
        total_ms = (time.perf_counter() - started) * 1e3
        height, width = image.shape[:2]
        masks = BoxMasks.from_masks((r["segmentation"] for r in records), (height, width))
        xywh = np.array([r["bbox"] for r in records], np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return Proposals(
            masks=masks,
            boxes_xyxy=boxes,
            predicted_iou=np.array([r["predicted_iou"] for r in records], np.float32),
            stability=np.array([r["stability_score"] for r in records], np.float32),
            timings_ms={"encoder": encoder_ms[0], "masks": total_ms - encoder_ms[0]},
        )

    # ------------------------------------------------------------------------------------------- fast mode
    def propose_points(self, frame: FrameEmbedding, points_xy: np.ndarray, multimask: bool = True) -> Proposals:
        """Masks for K point prompts (source px), 3 per point with multimask; only a light quality floor, then NMS."""
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        timings: dict[str, float] = {}
        rule = _Filter(self.point_iou_floor, self.point_stability_floor, iou_strict=False)
        decoded = _Decoded()
        self._decode(frame, points, rule, multimask=multimask, timings=timings, out=decoded)
        proposals = self._finish(frame, decoded, self.settings.box_nms_thresh, 0, timings)
        proposals.prompts_decoded = decoded.prompts_decoded
        return proposals

    # ---------------------------------------------------------------------------------------------- decoding
    def _decode(
        self,
        frame: FrameEmbedding,
        points: np.ndarray,
        rule: _Filter,
        multimask: bool,
        timings: dict[str, float],
        *,
        out: _Decoded,
        point_ids: np.ndarray | None = None,
        shared: SharedImageSide | None = None,
    ) -> SharedImageSide | None:
        """Decode point prompts (source px) in batches; add the full-size masks that pass `rule` to `out`, each with
        its point's id (`point_ids`, default 0..K-1). Returns the frame's shared image side, for the next call."""
        decoder = self.sam.mask_decoder
        _add_time(timings, "decoder", 0.0)
        _add_time(timings, "upscale", 0.0)
        if len(points) == 0:
            return shared
        ids = torch.as_tensor(np.arange(len(points)) if point_ids is None else np.asarray(point_ids))
        coords = self.transform.apply_coords(points, frame.original_size)
        mask_slice = slice(1, decoder.num_mask_tokens) if multimask else slice(0, 1)
        threshold, offset = self.sam.mask_threshold, self.settings.stability_score_offset
        batch = self.decode_batch
        out.prompts_decoded += len(points)
        with torch.inference_mode():
            started = time.perf_counter()
            if shared is None:
                shared = self._shared_image_side(frame)
            _add_time(timings, "decoder", (time.perf_counter() - started) * 1e3)
            for first in range(0, len(coords), batch):
                if self.on_batch is not None:
                    self.on_batch()
                started = time.perf_counter()
                prompts = torch.as_tensor(coords[first : first + batch], dtype=torch.float32, device=self.device)
                hs, keys, iou = self._prompt_side(shared, prompts, mask_slice)
                keep = rule.keep_iou(iou)
                # No wait here: on a GPU the host queues the upscaling while the decoder's kernels run, so "decoder"
                # is the time to queue them and "upscale" includes waiting for them; their sum is the batch's time.
                decoded_at = time.perf_counter()
                _add_time(timings, "decoder", (decoded_at - started) * 1e3)
                if self.masks_on_device:
                    batch_ids = ids[first : first + len(prompts)]
                    low_res = self._low_res(shared, hs, keys, mask_slice)
                    self._keep_on_device(frame, low_res, iou, keep, batch_ids, rule, threshold, offset, out)
                    _add_time(timings, "upscale", (time.perf_counter() - decoded_at) * 1e3)
                    continue
                # Upscale only the prompts with a surviving mask, and only their surviving masks.
                wanted = torch.nonzero(keep.any(dim=1)).flatten()
                for chunk in wanted.split(batch) if len(wanted) else ():
                    low_res = self._low_res(shared, hs[chunk], keys[chunk], mask_slice)
                    chunk_keep = keep[chunk]
                    low_res, chunk_iou = low_res[chunk_keep], iou[chunk][chunk_keep]
                    where = torch.nonzero(chunk_keep.cpu())  # (kept, 2): prompt in the chunk, mask token
                    chunk_ids = torch.stack([ids[first + chunk.cpu()][where[:, 0]], where[:, 1]], dim=1)
                    self._keep_full_size(frame, low_res, chunk_iou, chunk_ids, rule, threshold, offset, out)
                _sync(self.device)
                _add_time(timings, "upscale", (time.perf_counter() - decoded_at) * 1e3)
        return shared

    def _shared_image_side(self, frame: FrameEmbedding) -> SharedImageSide:
        """The frame's shared image side: on a GPU computed once per frame, when it is embedded
        (FrameEmbedding.decoder_side), since each goal's decoding would otherwise pay a millisecond of launches for
        it."""
        if frame.decoder_side is not None and frame.decoder_side[0] is self.sam:
            return frame.decoder_side[1]
        shared = shared_image_side(self.sam, frame.features)
        if self.masks_on_device:
            frame.decoder_side = (self.sam, shared)
        return shared

    def _prompt_tokens(self, coords: torch.Tensor) -> torch.Tensor:
        """Output tokens + sparse point embeddings (B, 7, C), as MaskDecoder.predict_masks builds them."""
        decoder, encoder = self.sam.mask_decoder, self.sam.prompt_encoder
        # PromptEncoder._embed_points for one positive point and its padding point, without its boolean-mask
        # indexing (which waits on the GPU, and cannot be captured in a CUDA graph): the same sums, so the same values.
        points = torch.stack([coords + 0.5, torch.zeros_like(coords)], dim=1)  # (B, 2, 2): the point, the padding
        encoded = encoder.pe_layer.forward_with_coords(points, encoder.input_image_size)
        positive = encoded[:, :1] + encoder.point_embeddings[1].weight
        padding = (torch.zeros_like(encoded[:, 1:]) + encoder.not_a_point_embed.weight)
        sparse = torch.cat([positive, padding], dim=1)
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        return torch.cat((output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse), dim=1)

    def _keep_full_size(
        self,
        frame: FrameEmbedding,
        low_res: torch.Tensor,
        iou: torch.Tensor,
        prompts: torch.Tensor,
        rule: _Filter,
        threshold: float,
        offset: float,
        out: _Decoded,
    ) -> None:
        """Stability filter (cheap low-res pre-check, exact decision at full size), then boxes and packed masks."""
        maps = self._resize_maps(frame.input_size, frame.original_size, grid_of(frame.features))
        if rule.stability > 0.0:
            plausible = calculate_stability_score(low_res[:, : maps.rows, : maps.cols], threshold, offset)
            plausible = plausible >= rule.stability - LOW_RES_STABILITY_MARGIN
            low_res, iou, prompts = low_res[plausible], iou[plausible], prompts[plausible.cpu()]
        if len(low_res) == 0:
            return
        full = full_size.full_size(maps, low_res, threshold, offset)
        masks, stability, boxes = full.masks, full.stability, full.boxes
        if rule.stability > 0.0:
            stable = stability >= rule.stability
            masks, iou, stability, prompts, boxes = (masks[stable], iou[stable], stability[stable],
                                                     prompts[stable.cpu()], boxes[stable])
        out.prompts.append(prompts[:, 0].numpy())
        out.levels.append(prompts[:, 1].numpy())
        out.boxes.append(boxes.cpu())
        out.iou.append(iou.float().cpu())
        out.stability.append(stability.float().cpu())
        out.packed.append(packbits_rows(masks.flatten(1)))

    def _keep_on_device(
        self,
        frame: FrameEmbedding,
        low_res: torch.Tensor,
        iou: torch.Tensor,
        keep_iou: torch.Tensor,
        prompt_ids: torch.Tensor,
        rule: _Filter,
        threshold: float,
        offset: float,
        out: _Decoded,
    ) -> None:
        """_keep_full_size on a GPU, for a whole batch ((B, M, h, w) low-res logits, (B, M) IoU and its filter):
        every mask is brought to full size there, and the filters are applied to all at once. Picking the survivors
        first (as on the host) waits on the GPU at every step; the GPU has the spare time, the host does not. The
        same filters, so the same masks (to float rounding)."""
        maps = self._resize_maps(frame.input_size, frame.original_size, grid_of(frame.features))
        tokens = low_res.shape[1]
        low_res, keep_iou, iou = low_res.flatten(0, 1), keep_iou.flatten(), iou.flatten()
        height, width = frame.original_size
        step = max(1, _DEVICE_LOGITS // (height * width))  # masks brought to full size at a time
        masks, tables = [], []
        for first in range(0, len(low_res), step):
            part = low_res[first : first + step]
            full = full_size.full_size(maps, part, threshold, offset)
            keep = keep_iou[first : first + step]
            if rule.stability > 0.0:
                plausible = calculate_stability_score(part[:, : maps.rows, : maps.cols], threshold, offset)
                keep = (keep & (plausible >= rule.stability - LOW_RES_STABILITY_MARGIN)
                        & (full.stability >= rule.stability))
            masks.append(full.masks)
            tables.append(torch.cat([keep[:, None].float(), full.boxes.float(), iou[first : first + step, None].float(),
                                     full.stability[:, None].float()], dim=1))
        # One transfer, one wait: which masks stay, their boxes and scores.
        table = torch.cat(tables).cpu()
        kept = np.flatnonzero(table[:, 0].numpy() > 0)
        if len(kept) == 0:
            return
        out.prompts.append(prompt_ids.numpy()[kept // tokens])
        out.levels.append(kept % tokens)
        out.boxes.append(table[kept, 1:5].long())
        out.iou.append(table[kept, 5])
        out.stability.append(table[kept, 6])
        stack = masks[0] if len(masks) == 1 else torch.cat(masks)
        out.dense.append(stack[torch.as_tensor(kept, device=stack.device)])

    def _resize_maps(self, input_size: tuple[int, int], original_size: tuple[int, int], grid: tuple[int, int]
                     ) -> full_size.ResizeMaps:
        """The low-res -> full-size resize of a frame geometry, built once (full_size.resize_maps)."""
        key = (input_size, original_size, grid)
        if key not in self._resize_matrices:
            self._resize_matrices[key] = full_size.resize_maps(input_size, original_size, grid, self.device)
        return self._resize_matrices[key]

    # ------------------------------------------------------------------------------------------ post-process
    def _finish(
        self,
        frame: FrameEmbedding,
        decoded: _Decoded,
        nms_thresh: float,
        min_region_area: int,
        timings: dict[str, float],
    ) -> Proposals:
        """Upstream's box NMS, then (if asked) its small-region clean-up and re-NMS, on the survivors only."""
        started = time.perf_counter()
        height, width = frame.original_size
        if not decoded.boxes:
            timings["postprocess"] = (time.perf_counter() - started) * 1e3
            empty = np.zeros((0,), np.float32)
            return Proposals(BoxMasks.empty((height, width)), np.zeros((0, 4), np.float32), empty, empty, timings)
        boxes, iou = torch.cat(decoded.boxes), torch.cat(decoded.iou)
        stability = torch.cat(decoded.stability)
        keep = batched_nms(boxes.float(), iou, torch.zeros_like(boxes[:, 0]), iou_threshold=nms_thresh)
        stack = _Stack(decoded)
        removed = np.setdiff1d(np.arange(len(boxes)), keep.numpy())
        all_boxes, all_iou, all_stability = boxes, iou, stability
        # Unpacked one at a time into crops of their boxes: no (N, H, W) stack on the host, now or in the frame
        # cache.
        masks = BoxMasks.from_packed(stack.packed(keep.numpy()), (height, width), boxes[keep].numpy())
        boxes, iou, stability = boxes[keep], iou[keep], stability[keep]
        decoded_as = keep.numpy()  # which decoded mask each kept one is, while the clean-up left it unchanged
        if min_region_area > 0:
            thresh = max(nms_thresh, self.settings.crop_nms_thresh)
            masks, boxes, order, changed = _remove_small_regions(masks, min_region_area, thresh)
            iou, stability = iou[order], stability[order]
            decoded_as = np.where(changed, -1, decoded_as)[order.numpy()]
        if self.keep_nested_wholes and len(removed):
            removed_boxes = all_boxes[removed].numpy()
            wholes = nested_wholes.restore(
                masks.inclusive_boxes(), masks.areas, removed_boxes, stack.areas(removed), all_iou[removed].numpy(),
                nms_thresh, stack.overlaps(masks, decoded_as, removed, removed_boxes),
            )
            if wholes:
                index = removed[wholes]
                restored = BoxMasks.from_packed(stack.packed(index), (height, width), all_boxes[index].numpy())
                masks = BoxMasks.concatenate([masks, restored])
                index = torch.as_tensor(index)
                boxes = torch.cat([boxes, all_boxes[index]])
                iou, stability = torch.cat([iou, all_iou[index]]), torch.cat([stability, all_stability[index]])
        timings["postprocess"] = (time.perf_counter() - started) * 1e3
        return Proposals(
            masks=masks,
            boxes_xyxy=boxes.numpy().astype(np.float32),
            predicted_iou=iou.numpy().astype(np.float32),
            stability=stability.numpy().astype(np.float32),
            timings_ms=timings,
        )


# ---------------------------------------------------------------------------------------------- post-processing
def _remove_small_regions(
    masks: BoxMasks, min_area: int, nms_thresh: float
) -> tuple[BoxMasks, torch.Tensor, torch.Tensor, np.ndarray]:
    """SamAutomaticMaskGenerator.postprocess_small_regions without the RLE round trip: masks, boxes, order, and
    whether the clean-up changed each input mask. small_regions.clean decides holes and islands against the whole
    frame, reading only each mask's box."""
    fixed, changed = small_regions.clean(masks, min_area)
    scores = torch.from_numpy((~changed).astype(np.float32))  # NMS prefers masks that needed no fixing
    boxes = torch.from_numpy(fixed.inclusive_boxes())  # batched_mask_to_box's boxes, from the crops
    keep = batched_nms(boxes.float(), scores, torch.zeros_like(boxes[:, 0]), iou_threshold=nms_thresh)
    return fixed[keep.numpy()], boxes[keep], keep, changed


class _Stack:
    """The decoded masks of a _Decoded, as one stack: bit-packed rows on the host, full size on a GPU."""

    def __init__(self, decoded: _Decoded) -> None:
        self._dense = torch.cat(decoded.dense) if decoded.dense else None
        self._packed = np.concatenate(decoded.packed) if self._dense is None else None

    def packed(self, indices: np.ndarray) -> np.ndarray:
        """The masks at `indices`, bit-packed one per row (packed on the GPU: an eighth of the bytes cross)."""
        if self._dense is None:
            return self._packed[indices]
        return packbits_rows(self._dense[torch.as_tensor(indices, device=self._dense.device)].flatten(1))

    def areas(self, indices: np.ndarray) -> np.ndarray:
        if self._dense is None:
            return np.bitwise_count(self._packed[indices]).sum(axis=1, dtype=np.int64)
        picked = self._dense[torch.as_tensor(indices, device=self._dense.device)]
        return picked.flatten(1).sum(dim=1).cpu().numpy()

    def overlaps(self, kept: BoxMasks, decoded_as: np.ndarray, removed: np.ndarray, removed_boxes: np.ndarray
                 ) -> nested_wholes.Overlaps:
        """Pixel intersections of the `removed` decoded masks with the kept masks `kept` (decoded_as: which
        decoded mask each kept one is, -1 where the small-region clean-up changed it) and with each other."""
        if self._dense is None:
            return nested_wholes.PackedOverlaps(kept, self._packed[removed], removed_boxes)
        device = self._dense.device
        same = decoded_as >= 0
        kept_dense = torch.zeros((len(kept), *self._dense.shape[1:]), dtype=torch.bool, device=device)
        kept_dense[torch.as_tensor(np.flatnonzero(same), device=device)] = self._dense[
            torch.as_tensor(decoded_as[same], device=device)]
        if (~same).any():  # a cleaned mask goes back to the GPU
            kept_dense[torch.as_tensor(np.flatnonzero(~same), device=device)] = torch.from_numpy(
                kept.to_dense(np.flatnonzero(~same))).to(device)
        return nested_wholes.DenseOverlaps(kept_dense, self._dense[torch.as_tensor(removed, device=device)])


def coarse_to_fine(side: int) -> list[np.ndarray]:
    """The indices of a side x side point grid (row-major, as build_all_layer_point_grids) in stages, coarse to fine:
    first the points on a grid of stride side/2 (the largest power of two under side), then each halved stride's new
    points, so the first stages spread over the whole frame and large segments are found by few points."""
    if side < 1:
        raise ValueError(f"side={side!r} must be at least 1")
    level = np.full(side, -1)
    stride, rank = 1 << max(0, (side - 1).bit_length() - 1), 0
    while stride >= 1:
        # Index i belongs to the first (largest) stride whose offset lattice stride/2 + k*stride holds it.
        fresh = (level < 0) & ((np.arange(side) - stride // 2) % stride == 0)
        level[fresh] = rank
        stride, rank = stride // 2, rank + 1
    stage = np.maximum(level[:, None], level[None, :]).ravel()  # a point is as fine as its finer coordinate
    return [np.flatnonzero(stage == r) for r in range(rank) if (stage == r).any()]


def _cover_finest(covered: np.ndarray, rows: np.ndarray, cols: np.ndarray, frame_size: tuple[int, int],
                  out: _Decoded, since: int, margin: int = 0) -> None:
    """Mark in `covered` ((K,) bool, one per grid point at `rows`, `cols`) the points inside the finest segment of
    a newly decoded prompt: the mask of its first mask token (the finest of SAM's three levels), when that passed
    the filters. Its other points would mostly repeat it. A prompt whose finest level failed covers nothing: its
    coarser levels may join neighbouring objects (two touching boxes as one), and their points must still be
    decoded to be found apart. Only the segment's inside counts: a point whose disc of radius `margin` (OpenCV's
    ellipse element; the frame's edge pixels repeated beyond it) lies wholly in the segments, which is the segments'
    erosion read at the point, with no full-frame erosion."""
    open_points = np.flatnonzero(~covered)
    if len(open_points) == 0:
        return
    segments = out.finest_union(since, frame_size)
    if segments is None:
        return
    height, width = frame_size
    device = segments.device
    if device.type == "cpu":  # the disc holds its centre: on the host, only points inside a segment read it
        open_points = open_points[segments[torch.as_tensor(rows[open_points]),
                                           torch.as_tensor(cols[open_points])].numpy()]
    # The disc's pixels of every point, made where the segments are (only the points and the disc cross over).
    dy, dx = (torch.as_tensor(d, device=device)[None] for d in _disc_offsets(margin))
    ys = (torch.as_tensor(rows[open_points], device=device)[:, None] + dy).clamp_(0, height - 1)
    xs = (torch.as_tensor(cols[open_points], device=device)[:, None] + dx).clamp_(0, width - 1)
    covered[open_points] |= segments[ys, xs].all(dim=1).cpu().numpy()


def _disc_offsets(margin: int) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of the pixels of cv2's (2 margin + 1)-wide ellipse element, around its centre."""
    if margin <= 0:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    dy, dx = np.nonzero(element)
    return dy - margin, dx - margin


# --------------------------------------------------------------------------------------------------- fast mode
# ------------------------------------------------------------------------------------------------------- helpers
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits' order: the first pixel is the byte's high bit


def packbits_rows(flat: torch.Tensor) -> np.ndarray:
    """np.packbits(flat, axis=1) of an (N, L) bool tensor, as a numpy array. On a GPU the bits are packed there
    (packbits_torch), so one eighth of the bytes crosses to the host."""
    if flat.device.type == "cpu":
        return np.packbits(flat.numpy(), axis=1)
    return packbits_torch(flat).cpu().numpy()


def packbits_torch(flat: torch.Tensor) -> torch.Tensor:
    """np.packbits(flat, axis=1) in torch ops, on the tensor's device: (N, ceil(L / 8)) uint8."""
    n, length = flat.shape
    padded = F.pad(flat, (0, -length % 8)).view(n, -1, 8).to(torch.uint8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=flat.device)
    return (padded * weights).sum(dim=2, dtype=torch.uint8)


def _check_rgb(image_rgb: np.ndarray) -> np.ndarray:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8:
        raise ValueError(f"image: expected a uint8 numpy array, got {getattr(image_rgb, 'dtype', type(image_rgb))}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image: shape {image_rgb.shape} is not supported; accepted: (height, width, 3) RGB")
    return np.ascontiguousarray(image_rgb)


def _add_time(timings: dict[str, float], name: str, ms: float) -> None:
    timings[name] = timings.get(name, 0.0) + ms


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
