"""CLIP matching: phrase embeddings (prompt ensemble, cached), region embeddings of masked crops (region_crops), and
a coarse text-similarity map of a whole frame for fast mode's prompt placement."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPModel
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from promptbox import onnx_runtime, region_crops
from promptbox.batch_graphs import SIZES as GRAPH_SIZES
from promptbox.batch_graphs import BatchGraphs
from promptbox.config import ENCODER_BACKENDS
from promptbox.image import check_image
from promptbox.masks import BoxMasks

# Prompt ensemble (from CLIP's ImageNet templates, the ones that suit single objects on a table): averaging
# over phrasings makes the phrase vector less sensitive to any one wording.
PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a cropped photo of the {}.",
    "a good photo of the {}.",
)


# encode_texts_stored's results in this process, by the same key as on disk.
_STORED: dict[str, torch.Tensor] = {}


@dataclass(frozen=True)
class TextEmbedding:
    phrase: str
    vector: torch.Tensor  # (D,) L2-normalised mean of the prompt-ensemble embeddings


class Matcher:
    """Embeds phrases and image regions into CLIP's joint space (all outputs L2-normalised)."""

    def __init__(
        self,
        model: CLIPModel,
        tokenizer,
        device: str = "cpu",
        *,
        batch_size: int = 32,
        context_pad: float = 0.1,
        map_long_side: int = 384,
        templates: Sequence[str] = PROMPT_TEMPLATES,
        max_cached_phrases: int = 4096,
        backend: str = "torch",
        onnx_cache_dir: str | Path | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        """`backend`: "torch", or "onnx" to run the text tower and the crops' image tower in ONNX Runtime (the
        patch-token pass stays torch), "onnx-int8" for their int8 quantisations; exports are cached in
        `onnx_cache_dir` (default: onnx_runtime's). `cuda_graphs`: on a GPU with the torch backend, the crops'
        image tower replays CUDA graphs (batch_graphs); False: eager launches."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if backend not in ENCODER_BACKENDS:
            raise ValueError(f"backend={backend!r} is not supported; accepted: {', '.join(ENCODER_BACKENDS)}")
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.context_pad = context_pad
        self.map_long_side = map_long_side
        self.templates = tuple(templates)
        vision = model.config.vision_config
        self.image_size: int = vision.image_size
        self.patch_size: int = vision.patch_size
        self.embed_dim: int = model.config.projection_dim
        self._max_text_tokens = model.config.text_config.max_position_embeddings
        self._mean = torch.tensor(OPENAI_CLIP_MEAN, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(OPENAI_CLIP_STD, device=self.device).view(3, 1, 1)
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._max_cached = max_cached_phrases
        self.backend = backend
        self._onnx_cache_dir = Path(onnx_cache_dir) if onnx_cache_dir else onnx_runtime.default_cache_dir()
        self._onnx: tuple[onnx_runtime.OnnxGraph, onnx_runtime.OnnxGraph] | None = None  # (text, image) towers
        self._graphs = (BatchGraphs(str(self.device)) if cuda_graphs and backend == "torch"
                        and self.device.type == "cuda" else None)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature (exp of the stored log value): 100 for the released models."""
        return float(self.model.logit_scale.detach().exp())

    # --- text ---------------------------------------------------------------------------------------------------

    def encode_text(self, phrase: str) -> TextEmbedding:
        return TextEmbedding(phrase, self.encode_texts([phrase])[0])

    def encode_texts(self, phrases: Sequence[str]) -> torch.Tensor:
        """(P, D) phrase embeddings; each phrase is encoded once per Matcher and then served from the cache."""
        for phrase in phrases:
            if not isinstance(phrase, str) or not phrase.strip():
                raise ValueError(f"phrase {phrase!r}: expected a non-empty string")
        new = [p for p in dict.fromkeys(phrases) if p not in self._text_cache]
        if new:
            for phrase, vector in zip(new, self._encode_phrases(new), strict=True):
                self._text_cache[phrase] = vector
        vectors = []
        for phrase in phrases:
            self._text_cache.move_to_end(phrase)
            vectors.append(self._text_cache[phrase])
        while len(self._text_cache) > self._max_cached:
            self._text_cache.popitem(last=False)
        if not vectors:
            return torch.empty(0, self.embed_dim, device=self.device)
        return torch.stack(vectors)

    def encode_texts_stored(self, phrases: Sequence[str], directory: Path) -> torch.Tensor:
        """encode_texts for a long fixed list (the vocabulary), kept on disk in `directory` keyed by the text
        model's weights, the templates and the phrases, so only the first start-up with a model pays for it."""
        # Quantised vectors differ from the float ones: int8's are stored apart, never mixed.
        extra = ["\n".join([*self.templates, "", *phrases]), *(["int8"] if self.backend == "onnx-int8" else [])]
        key = onnx_runtime.weights_digest(self.model, ("text_model.", "text_projection."), extra)
        if key in _STORED:  # another Locator of this process already has them
            return _STORED[key].to(self.device)
        path = Path(directory) / f"text-embeddings-{key}.pt"
        if path.is_file():
            try:
                vectors = torch.load(path, map_location=self.device, weights_only=True)
                if vectors.shape == (len(phrases), self.embed_dim):
                    _STORED[key] = vectors
                    return vectors
            except (OSError, RuntimeError, EOFError):
                pass  # a truncated or foreign file: encode again and replace it
        vectors = self._encode_phrases(list(phrases)) if phrases else torch.empty(0, self.embed_dim)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(vectors.cpu(), scratch)
            scratch.replace(path)  # atomic: a second process never reads half a file
        except OSError:
            pass  # a read-only cache only costs time
        _STORED[key] = vectors
        return vectors.to(self.device)

    def _encode_phrases(self, phrases: list[str]) -> torch.Tensor:
        prompts = [template.format(p) for p in phrases for template in self.templates]
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self._max_text_tokens, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            if self.backend == "torch":
                features = _features(self.model.get_text_features(**tokens))
            else:
                (features,) = self._onnx_graphs()[0].run(tokens["input_ids"], tokens["attention_mask"])
                features = features.to(self.device)
        per_prompt = F.normalize(features.float(), dim=-1).view(len(phrases), len(self.templates), -1)
        return F.normalize(per_prompt.mean(dim=1), dim=-1)

    # --- regions ------------------------------------------------------------------------------------------------

    def encode_regions(
        self, image_rgb: np.ndarray, boxes_xyxy: np.ndarray, masks: BoxMasks | np.ndarray | None = None, *,
        turn: int = 0,
    ) -> torch.Tensor:
        """(N, D) embeddings of the regions `boxes_xyxy` (source px); with `masks` (BoxMasks, or an (N, H, W) bool
        stack), of the masked objects only. `turn`: the frame's colour channels turned that many places first (1: R,
        G, B -> B, R, G, the hue turned by 120 degrees; colour_blind.py)."""
        return self.encode_turned(image_rgb, boxes_xyxy, masks, (turn,))[0]

    def encode_turned(
        self, image_rgb: np.ndarray, boxes_xyxy: np.ndarray, masks: BoxMasks | np.ndarray | None,
        turns: tuple[int, ...],
    ) -> list[torch.Tensor]:
        """Per turn in `turns`, encode_regions(..., turn=t): every turn's crops in the same batches of the image
        tower, so a few regions in two turns cost one call, not two (on a CPU a call has a fixed cost)."""
        image = check_image(image_rgb, min_side=1)
        boxes = np.asarray(boxes_xyxy, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes_xyxy: shape {boxes.shape} is not supported; accepted: (N, 4)")
        if not turns:
            raise ValueError("turns: empty; accepted: at least one turn (0: the frame as it is)")
        if masks is not None:
            shape = masks.shape if isinstance(masks, BoxMasks) else np.shape(masks)
            if tuple(shape) != (len(boxes), *image.shape[:2]):
                raise ValueError(
                    f"masks: shape {tuple(shape)} does not fit {len(boxes)} boxes on a {image.shape[:2]} frame; "
                    f"accepted: ({len(boxes)}, {image.shape[0]}, {image.shape[1]}) bool"
                )
            if not isinstance(masks, BoxMasks):
                masks = BoxMasks.from_dense(np.asarray(masks, dtype=bool))
        if len(boxes) == 0:
            return [torch.empty(0, self.embed_dim, device=self.device) for _ in turns]
        with torch.inference_mode():
            out: list[torch.Tensor] = []
            pending: list[torch.Tensor] = []  # crops for the next call, at most batch_size of them
            for turn in turns:
                frame = self._normalised(image, turn)
                for start in range(0, len(boxes), self.batch_size):
                    stop = min(start + self.batch_size, len(boxes))
                    if pending and sum(len(p) for p in pending) + stop - start > self.batch_size:
                        out.append(self._image_features(torch.cat(pending)))
                        pending = []
                    pending.append(region_crops.crops(frame, boxes[start:stop], masks, start, self.context_pad,
                                                      self.image_size))
            out.append(self._image_features(torch.cat(pending)))
        features = torch.cat(out)  # outside inference_mode: a normal tensor callers may modify in place
        return list(features.view(len(turns), len(boxes), -1).unbind(0))

    def _normalised(self, image: np.ndarray, turn: int = 0) -> torch.Tensor:
        """The frame as one (3, H, W) float tensor in CLIP's normalised space, where 0 is CLIP's mean colour; its
        channels turned `turn` places first, since CLIP's normalisation is per channel (turned after it, each channel
        would keep another's mean and spread: not a hue turn)."""
        pixels = torch.from_numpy(image).to(self.device).permute(2, 0, 1).float().div_(255.0)
        if turn % 3:
            pixels = torch.roll(pixels, shifts=turn, dims=0)
        return (pixels - self._mean) / self._std

    def warm_up_image_graphs(self) -> None:
        """Capture the image tower's graph of every batch size a call can use (batch_graphs.SIZES up to
        `batch_size`), so that no goal pays for a capture; without graphs, nothing runs."""
        if self._graphs is None:
            return
        for size in [s for s in GRAPH_SIZES if s <= self.batch_size]:
            blank = torch.zeros(size, 3, self.image_size, self.image_size, device=self.device)
            with torch.inference_mode():
                self._image_features(blank)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._graphs is not None:
            # A replay's outputs live in the graph's buffers until its next replay: the caller gets a copy.
            (features,) = self._graphs.run(None, pixels, ("image", tuple(pixels.shape[1:])), self._eager_image)
            return features.clone()
        return self._eager_image(None, pixels)[0]

    def _eager_image(self, _shared: None, pixels: torch.Tensor) -> tuple[torch.Tensor]:
        if self.backend == "torch":
            features = _features(self.model.get_image_features(pixel_values=pixels))
        else:
            (features,) = self._onnx_graphs()[1].run(pixels)
            features = features.to(self.device)
        return (F.normalize(features.float(), dim=-1),)

    def _onnx_graphs(self) -> tuple[onnx_runtime.OnnxGraph, onnx_runtime.OnnxGraph]:
        if self._onnx is None:
            self._onnx = onnx_runtime.clip_graphs(self.model, self._onnx_cache_dir, str(self.device),
                                                  int8=self.backend == "onnx-int8")
        return self._onnx

    # --- similarity map -----------------------------------------------------------------------------------------

    def patch_tokens(self, image_rgb: np.ndarray) -> PatchTokens:
        """Every ViT patch of the frame in the joint space, from one forward at `map_long_side`: what fast mode's
        similarity map and the mask-pooled region embeddings both read, so a frame pays for it once."""
        # One ViT forward at a moderate resolution (position embeddings interpolated), then MaskCLIP's value path
        # in the last layer: the patch tokens' value projection instead of attention, which is global in CLIP's
        # last layer and blurs localisation. Residual and MLP of that layer are skipped (ClearCLIP found they
        # add noise); then post_layernorm and visual_projection put the tokens in the joint space.
        image = check_image(image_rgb, min_side=1)
        height, width = image.shape[:2]
        scale = self.map_long_side / max(height, width)
        grid_h = max(1, round(height * scale / self.patch_size))
        grid_w = max(1, round(width * scale / self.patch_size))
        # Torch with either backend: one pass a frame, at a grid that follows the frame's aspect.
        vision = self.model.vision_model
        with torch.inference_mode():
            frame = self._normalised(image)[None]
            size = (grid_h * self.patch_size, grid_w * self.patch_size)
            pixels = F.interpolate(frame, size=size, mode="bilinear", antialias=True, align_corners=False)
            out = vision(pixel_values=pixels, interpolate_pos_encoding=True, output_hidden_states=True)
            last = vision.encoder.layers[-1]
            hidden = last.layer_norm1(out.hidden_states[-2])  # the input of the last layer
            values = last.self_attn.out_proj(last.self_attn.v_proj(hidden))
            tokens = self.model.visual_projection(vision.post_layernorm(values[:, 1:]))
            tokens = F.normalize(tokens.float(), dim=-1).view(grid_h, grid_w, -1)
        return PatchTokens(tokens.clone(), (height, width))

    def similarity_map(
        self, image_rgb: np.ndarray, text: TextEmbedding, tokens: PatchTokens | None = None,
        scenery: torch.Tensor | None = None,
    ) -> np.ndarray:
        """(h, w) float32 cosine similarity of the phrase to each ViT patch of the frame (h, w = frame size /
        patch size at `map_long_side`); higher = more like the phrase. `tokens`: the frame's, if already computed.
        `scenery`: (B, D) unit text embeddings ("a table", "a wall"); each patch then scores its cosine to the phrase
        less its highest cosine to them, so a large surface that is a little like every phrase does not peak."""
        if tokens is None:
            tokens = self.patch_tokens(image_rgb)
        elif tokens.frame_size != tuple(np.shape(image_rgb)[:2]):
            raise ValueError(f"tokens: computed for a {tokens.frame_size} frame, not {np.shape(image_rgb)[:2]}")
        return over_scenery(tokens.tokens, text.vector, scenery).cpu().numpy().astype(np.float32)


def over_scenery(vectors: torch.Tensor, text: torch.Tensor, scenery: torch.Tensor | None) -> torch.Tensor:
    """Each unit image vector's (..., D) cosine to the phrase (`text`, (D,) unit), less its highest cosine to the
    `scenery` phrases ((B, D) unit) when given: how much more it looks like the phrase than like table or wall. The
    score of fast mode's maps, patch tokens (Matcher.similarity_map) and windows (window_map)."""
    vectors = vectors.float()
    similarity = vectors @ text.to(vectors)
    if scenery is None:
        return similarity
    if scenery.ndim != 2 or scenery.shape[0] == 0 or scenery.shape[1] != vectors.shape[-1]:
        raise ValueError(f"scenery: shape {tuple(scenery.shape)}; accepted: (B, {vectors.shape[-1]}), B >= 1")
    return similarity - (vectors @ scenery.to(vectors).T).amax(dim=-1)


@dataclass(frozen=True)
class PatchTokens:
    """A frame's CLIP patch tokens in the joint space, L2-normalised: (grid_h, grid_w, D), on the model's device."""

    tokens: torch.Tensor
    frame_size: tuple[int, int]  # (H, W) of the frame they were computed from


def _features(output) -> torch.Tensor:
    """get_*_features returns a tensor in transformers 4 and an output object (projected pooler_output) in 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
