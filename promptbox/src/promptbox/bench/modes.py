"""What one timed run of each mode does, on a Locator this process loaded.

  seed           upstream SamAutomaticMaskGenerator, then TinyCLIP on one box crop at a time (the seed script's way)
  exact          Locator, mode "exact": AMG's masks with the shared-work decoder, then matching
  fast           Locator, mode "fast": point prompts at the text-similarity peaks only
  fast_prepared  fast, on a frame whose embedding `Locator.prepare` computed beforehand (as the ROS node does)

Every run returns its stage timings (ms), the proposals it matched (after NMS), and the chosen box in one
convention: source-pixel edges, xyxy (x1, y1 exclusive), as Detection.box_xyxy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

MODES = ("seed", "exact", "fast", "fast_prepared")
MODE_LABELS = {
    "seed": "(a) seed: upstream AMG + per-crop CLIP",
    "exact": "(b) exact",
    "fast": "(c) fast, cold frame",
    "fast_prepared": "(d) fast, frame prepared",
}
MATCH_IOU = 0.98  # a mask "is the same mask" at this IoU or above
PREPARE_STAGE = "prepare (not in total)"


@dataclass
class Run:
    timings_ms: dict[str, float]
    proposals: object  # promptbox.proposals.Proposals, after NMS: what matching saw
    box_xyxy: tuple[float, float, float, float] | None  # source-pixel edges; the best candidate when not found
    found: bool


def run_once(mode: str, locator, image: np.ndarray, command: str, text) -> Run:
    """One timed run of `mode` on a cold frame (fast_prepared: a frame prepared first, outside the total)."""
    locator.forget_frames()  # every run pays for its own embedding, except where prepared on purpose
    if mode == "seed":
        timings, proposals, box = seed_once(locator, image, text)
        return Run(timings, proposals, box, box is not None)
    timings: dict[str, float] = {}
    frame = None
    if mode == "fast_prepared":
        started = time.perf_counter()
        frame = locator.prepare(image)
        timings[PREPARE_STAGE] = (time.perf_counter() - started) * 1e3
    with _recording(locator.proposer) as seen:
        result = locator.locate(image, command, frame=frame)
    timings.update(result.timings_ms)
    best = result if result.found else result.best
    box = None if best is None else tuple(float(v) for v in best.box_xyxy)
    return Run(timings, seen["proposals"], box, bool(result.found))


def seed_once(locator, image: np.ndarray, text) -> tuple[dict[str, float], object, tuple | None]:
    """The seed: upstream AMG, then one CLIP forward per box crop (CLIPImageProcessor on a PIL crop), argmax."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    proposals = locator.proposer.propose_upstream(image)
    total = (time.perf_counter() - started) * 1e3
    timings["embedding"] = proposals.timings_ms.get("encoder", 0.0)
    timings["proposing"] = total - timings["embedding"]
    started = time.perf_counter()
    scores = seed_crop_scores(locator.matcher, image, proposals.boxes_xyxy, text.vector)
    timings["matching"] = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    box = None
    if len(scores):
        # upstream's boxes have an inclusive max; +1 gives source-pixel edges, the Locator's convention
        x0, y0, x1, y1 = (float(v) for v in proposals.boxes_xyxy[int(np.argmax(scores))])
        box = (x0, y0, x1 + 1.0, y1 + 1.0)
    timings["selecting"] = (time.perf_counter() - started) * 1e3
    timings["total"] = sum(timings.values())
    return timings, proposals, box


def seed_crop_scores(matcher, image: np.ndarray, boxes_xyxy: np.ndarray, text_vector: torch.Tensor) -> np.ndarray:
    """Cosine similarity of each box crop to the text, one crop at a time as the seed did (no batching)."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    size = matcher.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    model, device = matcher.model, matcher.device
    scores = []
    with torch.inference_mode():
        for x0, y0, x1, y1 in np.asarray(boxes_xyxy, dtype=np.int64).tolist():
            crop = Image.fromarray(image[y0 : max(y1, y0) + 1, x0 : max(x1, x0) + 1])
            pixels = processor(images=crop, return_tensors="pt")["pixel_values"].to(device)
            features = model.get_image_features(pixel_values=pixels)
            if not isinstance(features, torch.Tensor):  # transformers 5 returns an output object
                features = features.pooler_output
            features = torch.nn.functional.normalize(features.float(), dim=-1)[0]
            scores.append(float(features @ text_vector.to(features)))
    return np.array(scores, dtype=np.float32)


def decoder_cost(proposer, image: np.ndarray, prompts: int) -> dict[str, float]:
    """Milliseconds per point prompt: upstream SamPredictor.predict_torch vs the shared-work decoder.

    Same frame, same `prompts` grid points, multimask. Upstream decodes them in one batch (AMG's batches are
    larger still) and its figure includes upsampling every mask to full size, as AMG calls it; ours runs in the
    proposer's own batches and is split into the transformer (+ IoU head), paid by every prompt, and the low-res
    mask logits (upscaling), paid only by prompts with a mask that passed the IoU filter.
    """
    from mobile_sam.predictor import SamPredictor

    from promptbox.shared_decoder import low_res_masks, shared_image_side, two_way_transformer

    sam, device = proposer.sam, proposer.device
    frame = proposer.embed(image)
    side = max(1, int(round(prompts**0.5)))
    grid = (np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) + 0.5) / side
    points = grid * np.array([[image.shape[1], image.shape[0]]])
    coords = torch.as_tensor(proposer.transform.apply_coords(points, frame.original_size), dtype=torch.float32,
                             device=device)
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    labels = torch.ones(len(coords), 1, dtype=torch.int, device=device)
    with torch.inference_mode():
        upstream = _median_ms(lambda: predictor.predict_torch(coords[:, None], labels, return_logits=True), device)
        shared = shared_image_side(sam, frame.features)
        tokens = proposer._prompt_tokens(coords)
        chunks = [tokens[i : i + proposer.decode_batch] for i in range(0, len(tokens), proposer.decode_batch)]
        decoded = [two_way_transformer(sam, shared, chunk) for chunk in chunks]

        def transformer_pass() -> None:
            for chunk in chunks:  # each chunk's result dropped before the next, as in the proposer
                two_way_transformer(sam, shared, chunk)

        def masks_pass() -> None:
            for hs, keys in decoded:
                low_res_masks(sam.mask_decoder, hs, keys, slice(1, 4), shared.grid)

        transformer = _median_ms(transformer_pass, device)
        masks = _median_ms(masks_pass, device)
        shared_ms = _median_ms(lambda: shared_image_side(sam, frame.features), device)  # a frame's cost, uncached
    n = len(coords)
    return {
        "prompts": n,
        "batch": proposer.decode_batch,
        "upstream": round(upstream / n, 2),
        "promptbox_transformer": round(transformer / n, 2),
        "promptbox_masks": round(masks / n, 2),
        "promptbox_total": round((transformer + masks) / n, 2),
        "promptbox_shared_per_frame": round(shared_ms, 2),
    }


def box_iou(a, b) -> float:
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else float(a == b)


def matched_fraction(reference: np.ndarray, candidates: np.ndarray, threshold: float = MATCH_IOU) -> float:
    """Share of `reference` masks that some `candidates` mask matches at IoU >= threshold (1.0 if none to match)."""
    if len(reference) == 0:
        return 1.0
    if len(candidates) == 0:
        return 0.0
    ref = torch.from_numpy(reference.reshape(len(reference), -1)).float()
    cand = torch.from_numpy(candidates.reshape(len(candidates), -1)).float()
    inter = ref @ cand.T
    union = ref.sum(1)[:, None] + cand.sum(1)[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(inter))
    return float((iou.max(dim=1).values >= threshold).float().mean())


@contextmanager
def _recording(proposer) -> Iterator[dict]:
    """Keep the Proposals a Locator's call produced last (for the mask-set agreement), without changing them: of
    the grid's stages (fast mode's fallback), the last one it post-processed."""
    seen: dict = {}
    names = ("grid_stages", "propose_points", "propose_upstream")

    def recorded(make):
        def wrapper(*args, **kwargs):
            seen["proposals"] = make(*args, **kwargs)
            return seen["proposals"]
        return wrapper

    for name in names:
        method = getattr(proposer, name)

        def stages(*args, _method=method, **kwargs):
            for stage in _method(*args, **kwargs):
                yield recorded(stage)

        # Shadows the method on this instance only.
        setattr(proposer, name, stages if name == "grid_stages" else recorded(method))
    try:
        yield seen
    finally:
        for name in names:
            delattr(proposer, name)


def _median_ms(fn, device: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
