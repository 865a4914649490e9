"""The ONNX Runtime path (`LocatorConfig.encoder_backend` "onnx"): the models' graphs exported once, cached on disk
by a hash of their weights, and run by ONNX Runtime sessions.

Four graphs: MobileSAM's image encoder; the per-batch part of promptbox's shared-work mask decoder (two-way
transformer + IoU head, and the low-res masks: the shared image side stays torch, once a frame); CLIP's text tower;
CLIP's image tower on crops. CLIP's patch-token pass (MaskCLIP's value path at a grid that depends on the frame's
aspect) stays torch: it runs once a frame and needs interpolated position embeddings at a variable grid.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

# Graph files are keyed by the weights and by the code that builds the graph, so editing the decoder's arithmetic
# (shared_decoder.py) or these wrappers never runs a stale export. Read at import: the code this process runs.
_THIS_SOURCE = Path(__file__).read_text()


def default_cache_dir() -> Path:
    """$PROMPTBOX_CACHE_DIR/onnx, else $XDG_CACHE_HOME/promptbox/onnx (~/.cache/promptbox/onnx)."""
    base = os.environ.get("PROMPTBOX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "promptbox"
    )
    return Path(base) / "onnx"


def weights_digest(module: torch.nn.Module, prefixes: tuple[str, ...] = ("",), extra: Sequence[str] = ()) -> str:
    """blake2b of the module's tensors whose names start with one of `prefixes`, the torch version and `extra`."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(module.state_dict().items()):
        if name.startswith(prefixes):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(torch.__version__.encode())
    for text in extra:
        digest.update(text.encode())
    return digest.hexdigest()


class OnnxGraph:
    """One exported graph: exported to `path` on first use unless it is there, then run by one ORT session."""

    def __init__(
        self,
        path: Path,
        build: Callable[[], torch.nn.Module],
        example: tuple[torch.Tensor, ...],
        input_names: list[str],
        output_names: list[str],
        dynamic_axes: dict[str, dict[int, str]] | None = None,
        *,
        device: str = "cpu",
        what: str = "a graph",
        int8: bool = False,
    ) -> None:
        self.path = path  # the float32 export
        # What the session runs: the export, or its int8 dynamic quantisation (made from the export, cached beside).
        self.run_path = path.with_name(f"{path.stem}_int8.onnx") if int8 else path
        self._build = build
        self._example = example
        self._input_names = input_names
        self._output_names = output_names
        self._dynamic_axes = dynamic_axes
        self._device = str(device)
        self._what = what
        self._session = None

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The graph's outputs (torch tensors sharing ORT's buffers) for `inputs`, in input_names' order."""
        session = self._session or self.load()
        feed = {name: _numpy(x) for name, x in zip(self._input_names, inputs, strict=True)}
        return [torch.from_numpy(out) for out in session.run(None, feed)]

    def load(self):
        """The ORT session, exporting the graph first if no export is cached."""
        import onnxruntime

        if not self.run_path.exists():
            if not self.path.exists():
                export(self._build(), self._example, self.path, self._input_names, self._output_names,
                       self._dynamic_axes, what=self._what)
            if self.run_path != self.path:
                quantize_int8(self.path, self.run_path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        providers = ["CPUExecutionProvider"]
        if self._device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._session = onnxruntime.InferenceSession(str(self.run_path), options, providers=providers)
        return self._session


def export(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    *,
    what: str = "a graph",
) -> None:
    """Export `module` to `path` (TorchScript exporter, opset 17), atomically: a concurrent reader never sees half a
    file. Exporting needs the `onnx` package."""
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise RuntimeError(
            f"encoder_backend='onnx' needs {what} exported to {path}, and exporting needs the `onnx` "
            "package (pip install 'promptbox[onnx]'); or copy an export made elsewhere to that path, "
            "or use encoder_backend='torch'"
        ) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about every shape-dependent branch; tests/test_onnx.py checks the graphs at batch
            # sizes and text lengths other than the example's.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, example, str(partial), dynamo=False, opset_version=17,
                input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def quantize_int8(source: Path, target: Path) -> None:
    """int8 dynamic quantisation of `source`'s MatMuls (weights int8, activations quantised per call), atomically.
    Only MatMul: ConvInteger is slow on CPU, and the decoder's upscaling is ConvTranspose, which has no int8 kernel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = target.with_suffix(f".{os.getpid()}.partial")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint on the root logger at every call
    try:
        quantize_dynamic(source, partial, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        partial.replace(target)
    finally:
        root.setLevel(level)
        partial.unlink(missing_ok=True)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().contiguous().numpy()


def _source_digest(*objects) -> list[str]:
    """The source of the graph-building code (this file and the modules or functions given), for the cache key."""
    return [_THIS_SOURCE, *(inspect.getsource(o) for o in objects)]


# ----------------------------------------------------------------------------------------------------- MobileSAM
def encoder_graph(sam, cache_dir: Path, device: str = "cpu", grid: tuple[int, int] | None = None) -> OnnxGraph:
    """MobileSAM's image encoder for one embedding grid (default: the square): (1, 3, 16*rows, 16*cols) normalised,
    padded pixels -> (1, 256, rows, cols) features (encoder_grid)."""
    from promptbox.encoder_grid import CELL_PX, FrameShapedEncoder

    encoder = sam.image_encoder
    side = encoder.img_size // CELL_PX
    rows, cols = grid or (side, side)
    square = (rows, cols) == (side, side)
    name = "" if square else f"_{rows}x{cols}"
    path = cache_dir / f"mobilesam_vit_t_encoder{name}_{weights_digest(encoder)}.onnx"
    example = (torch.zeros(1, 3, CELL_PX * rows, CELL_PX * cols, device=next(encoder.parameters()).device),)
    return OnnxGraph(path, lambda: encoder if square else FrameShapedEncoder(encoder, (rows, cols)), example,
                     ["image"], ["features"], device=device, what="the image encoder")


class PromptDecoder(torch.nn.Module):
    """What proposals.MaskProposer._decode runs per batch of B prompts: the two-way transformer against the frame's
    shared image side (its five tensors as inputs) and the IoU head. Outputs hs (B, T, C), keys (B, N, C) and the
    predicted IoU of all mask tokens (B, 4)."""

    def __init__(self, sam) -> None:
        super().__init__()
        self.mask_decoder = sam.mask_decoder  # only the decoder's weights go into the graph

    def forward(self, src, pe, keys_t2i, values_t2i, queries_i2t, tokens):
        from promptbox import shared_decoder

        shared = shared_decoder.SharedImageSide(src, pe, keys_t2i, values_t2i, queries_i2t)
        hs, keys = shared_decoder.two_way_transformer(self, shared, tokens)  # reads only .mask_decoder
        return hs, keys, self.mask_decoder.iou_prediction_head(hs[:, 0, :])


class LowResMasks(torch.nn.Module):
    """shared_decoder.low_res_masks for every mask token: (B, 4, 4*rows, 4*cols) logits; callers slice the tokens they
    use (the extra token costs ~1% of the upscaling, one graph serves multimask and single-mask calls)."""

    def __init__(self, sam, grid: tuple[int, int]) -> None:
        super().__init__()
        self.mask_decoder = sam.mask_decoder
        self.grid = grid

    def forward(self, hs, keys):
        from promptbox import shared_decoder

        return shared_decoder.low_res_masks(self.mask_decoder, hs, keys, slice(None), self.grid)


def decoder_graphs(sam, shared, tokens: torch.Tensor, cache_dir: Path, device: str = "cpu", *, int8: bool = False
                   ) -> tuple[OnnxGraph, OnnxGraph]:
    """(prompt decoder, low-res masks) graphs of `sam` for `shared.grid` (the image tokens' count and layout are
    traced in); `shared` and `tokens` are example inputs (any frame of that grid). `int8`: run their int8 dynamic
    quantisations."""
    from promptbox import shared_decoder

    code = _source_digest(shared_decoder)  # the decoder's arithmetic, all of it
    rows, cols = shared.grid
    key = f"{rows}x{cols}_{weights_digest(sam, ('mask_decoder.',), code)}"
    shared_names = ["src", "pe", "keys_t2i", "values_t2i", "queries_i2t"]
    shared_inputs = (shared.src, shared.pe, shared.keys_token_to_image, shared.values_token_to_image,
                     shared.queries_image_to_token)
    # Two prompts whatever the caller has (warm-up decodes one): a batch of one lets the tracer fold sizes away.
    example = tokens[:1].repeat(2, 1, 1)
    decoder = OnnxGraph(
        cache_dir / f"mobilesam_vit_t_prompt_decoder_{key}.onnx", lambda: PromptDecoder(sam).eval(),
        (*shared_inputs, example), [*shared_names, "tokens"], ["hs", "keys", "iou"],
        {"tokens": {0: "batch"}, "hs": {0: "batch"}, "keys": {0: "batch"}, "iou": {0: "batch"}},
        device=device, what="the mask decoder", int8=int8,
    )
    with torch.no_grad():
        hs, keys = shared_decoder.two_way_transformer(sam, shared, example)
    low_res = OnnxGraph(
        cache_dir / f"mobilesam_vit_t_low_res_masks_{key}.onnx", lambda: LowResMasks(sam, shared.grid).eval(),
        (hs, keys), ["hs", "keys"], ["low_res"],
        {"hs": {0: "batch"}, "keys": {0: "batch"}, "low_res": {0: "batch"}},
        device=device, what="the mask decoder's upscaling", int8=int8,
    )
    return decoder, low_res


# ---------------------------------------------------------------------------------------------------------- CLIP
class TextTower(torch.nn.Module):
    """CLIPModel.get_text_features: token ids and attention mask (P, L) -> (P, D) projected features."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        from promptbox.matching import _features

        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


class ImageTower(torch.nn.Module):
    """CLIPModel.get_image_features: (B, 3, S, S) normalised crops -> (B, D) projected features."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        from promptbox.matching import _features

        return _features(self.model.get_image_features(pixel_values=pixel_values))


def clip_graphs(model, cache_dir: Path, device: str = "cpu", *, int8: bool = False) -> tuple[OnnxGraph, OnnxGraph]:
    """(text tower, image tower) graphs of a transformers CLIPModel; `int8`: run their int8 dynamic quantisations."""
    import transformers

    versions = [transformers.__version__, *_source_digest()]
    text_key = weights_digest(model, ("text_model.", "text_projection."), versions)
    image_key = weights_digest(model, ("vision_model.", "visual_projection."), versions)
    length = model.config.text_config.max_position_embeddings
    ids = torch.ones(2, min(length, 8), dtype=torch.int64)
    text = OnnxGraph(
        cache_dir / f"clip_text_{text_key}.onnx", lambda: TextTower(model).eval(),
        (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], ["features"],
        {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
         "features": {0: "batch"}},
        device=device, what="CLIP's text tower", int8=int8,
    )
    size = model.config.vision_config.image_size
    image = OnnxGraph(
        cache_dir / f"clip_image_{image_key}.onnx", lambda: ImageTower(model).eval(),
        (torch.zeros(2, 3, size, size),), ["pixel_values"], ["features"],
        {"pixel_values": {0: "batch"}, "features": {0: "batch"}},
        device=device, what="CLIP's image tower", int8=int8,
    )
    return text, image
