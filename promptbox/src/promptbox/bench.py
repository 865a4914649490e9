"""`promptbox bench`: the seed configuration against exact and fast modes, on the same frame, in one process.

Modes, each timed `repeats` times on the same frame with the same models:
  seed           upstream SamAutomaticMaskGenerator, then TinyCLIP on one box crop at a time (the seed script's way)
  exact          Locator, mode "exact": AMG's masks with the shared-work decoder, batched masked-crop matching
  fast           Locator, mode "fast": point prompts at the text-similarity peaks only
  fast_prepared  fast, on a frame whose embedding `Locator.prepare` computed beforehand (as the ROS node does)
Random weights predict low IoUs and unstable masks, so the seed thresholds would drop every mask and time nothing;
`--thresholds zero` (the default with random weights) keeps every mask in play for every mode.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from promptbox.config import AmgSettings, LocatorConfig

MODES = ("seed", "exact", "fast", "fast_prepared")
MODE_LABELS = {
    "seed": "(a) seed: upstream AMG + per-crop CLIP",
    "exact": "(b) exact",
    "fast": "(c) fast",
    "fast_prepared": "(d) fast, frame prepared",
}
MATCH_IOU = 0.98  # a mask "is the same mask" at this IoU or above
DEFAULT_COMMAND = "take the coffee cup"


@dataclass(frozen=True)
class BenchOptions:
    image: str | None = None  # None: the bundled sample photo
    command: str = DEFAULT_COMMAND
    repeats: int = 3
    device: str = "cpu"
    size: tuple[int, int] | None = (640, 480)  # (W, H) the frame is resized to; None: as loaded
    points_per_side: int = 16
    thresholds: str = "auto"  # auto: zero with random weights, seed otherwise
    random_weights: bool = False
    skip_seed: bool = False
    sam_checkpoint: str | None = None
    clip_model: str = "tinyclip-61m"
    threads: int | None = None
    encoder_backend: str = "torch"
    decoder_prompts: int = 16  # prompts for the per-prompt decoder comparison; 0 skips it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", help="image file (default: the bundled coffee.png)")
    # dest is not "command": the promptbox CLI keeps the subcommand's name there.
    parser.add_argument(
        "--command", dest="bench_command", default=DEFAULT_COMMAND, help=f'what to find (default "{DEFAULT_COMMAND}")'
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--size", default="640x480", help="resize the frame to WxH first (default 640x480; 'orig')")
    parser.add_argument("--points-per-side", type=int, default=16, help="AMG grid (default 16, the seed's)")
    parser.add_argument(
        "--thresholds",
        choices=("auto", "zero", "seed"),
        default="auto",
        help="AMG IoU/stability thresholds: seed (0.8/0.85), zero (keep every mask), auto: zero iff weights are random",
    )
    parser.add_argument(
        "--random-weights", action="store_true", help="random-init models where checkpoints are missing"
    )
    parser.add_argument("--skip-seed", action="store_true", help="leave out the (slow) seed configuration")
    parser.add_argument("--sam-checkpoint", help="path to mobile_sam.pt (default: resolve, see README)")
    parser.add_argument("--model", default="tinyclip-61m", help="CLIP: tinyclip-61m, tinyclip-8m, clip-b32, or a path")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--encoder-backend", choices=("torch", "onnx"), default="torch",
                        help="MobileSAM image encoder for promptbox's modes (the seed always runs torch)")
    parser.add_argument("--decoder-prompts", type=int, default=16, help="prompts for the decoder comparison (0: skip)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run_from_args(args: argparse.Namespace) -> int:
    from promptbox.weights import WeightsError

    try:
        options = BenchOptions(
            image=args.image,
            command=args.bench_command,
            repeats=args.repeats,
            device=args.device,
            size=parse_size(args.size),
            points_per_side=args.points_per_side,
            thresholds=args.thresholds,
            random_weights=args.random_weights,
            skip_seed=args.skip_seed,
            sam_checkpoint=args.sam_checkpoint,
            clip_model=args.model,
            threads=args.threads,
            encoder_backend=args.encoder_backend,
            decoder_prompts=args.decoder_prompts,
        )
        result = run(options)
    except (WeightsError, ValueError) as error:
        print(f"promptbox bench: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promptbox bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None or text.lower() in ("orig", "original", "none"):
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: expected WxH, e.g. 640x480, or 'orig'") from None
    if width < 8 or height < 8:
        raise ValueError(f"--size {text!r}: at least 8x8")
    return width, height


# ----------------------------------------------------------------------------------------------------------- run
def run(options: BenchOptions) -> dict:
    """Time every mode on one frame; returns a JSON-ready dict (see format_table for the reading)."""
    from promptbox.command import parse
    from promptbox.locator import Locator

    if options.repeats < 1:
        raise ValueError(f"repeats={options.repeats}: at least 1")
    image, image_label = load_image(options.image, options.size)
    target = parse(options.command)
    config = LocatorConfig(
        sam_checkpoint=options.sam_checkpoint,
        clip_model=options.clip_model,
        device=options.device,
        mode="exact",
        allow_random_weights=options.random_weights,
        threads=options.threads,
        encoder_backend=options.encoder_backend,
        amg=AmgSettings(points_per_side=options.points_per_side),
    )
    locator = Locator(config)
    thresholds = options.thresholds
    if thresholds == "auto":
        thresholds = "zero" if locator.random_weights else "seed"
    proposer = locator.proposer
    if thresholds == "zero":
        proposer.settings = replace(proposer.settings, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        proposer.point_iou_floor = proposer.point_stability_floor = 0.0
    text = locator.matcher.encode_text(target.phrase)

    result: dict = {
        "config": {
            "image": image_label,
            "size": [int(image.shape[1]), int(image.shape[0])],
            "command": options.command,
            "phrase": target.phrase,
            "device": options.device,
            "threads": torch.get_num_threads(),
            "encoder_backend": options.encoder_backend,
            "cpu": platform.processor() or platform.machine(),
            "thresholds": thresholds,
            "amg": asdict(proposer.settings),
            "fast_points": config.fast_points,
            "repeats": options.repeats,
            "random_weights": locator.random_weights,
            "models": locator.describe(),
        },
        "load_seconds": round(locator.load_seconds, 3),
        "modes": {},
    }
    runs: dict[str, _ModeRuns] = {}
    modes = [m for m in MODES if not (options.skip_seed and m == "seed")]
    # Peak RSS only rises within a process: the seed (3.5 GB at 16x16) runs last so it hides no other mode's peak.
    for mode in sorted(modes, key=lambda m: m == "seed"):
        _reset_cuda_peak(options.device)
        runs[mode] = _run_mode(mode, locator, image, options.command, text, options.repeats)
        runs[mode].peak_rss_mb = _peak_rss_mb()
        runs[mode].cuda_peak_mb = _cuda_peak_mb(options.device)
    seed = runs.get("seed")
    for mode in modes:
        result["modes"][mode] = runs[mode].summary(seed)
    if options.decoder_prompts > 0:
        result["decoder_ms_per_prompt"] = decoder_cost(proposer, image, options.decoder_prompts)
    return result


@dataclass
class _ModeRuns:
    label: str
    stages: list[dict[str, float]]  # one dict of stage -> ms per repeat
    proposals: object  # the last run's Proposals
    box_xyxy: tuple[float, float, float, float] | None
    found: bool
    peak_rss_mb: float = 0.0
    cuda_peak_mb: float | None = None

    def total_ms(self) -> float:
        return statistics.median(s["total"] for s in self.stages)

    def summary(self, seed: _ModeRuns | None) -> dict:
        names = list(dict.fromkeys(name for stages in self.stages for name in stages))
        stages = {}
        for name in names:
            values = [s[name] for s in self.stages if name in s]
            stages[name] = {
                "median": round(statistics.median(values), 2),
                "min": round(min(values), 2),
                "max": round(max(values), 2),
            }
        out = {
            "label": self.label,
            "stages": stages,  # milliseconds
            "ratio_vs_seed": None,
            "speedup_vs_seed": None,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "cuda_peak_mb": None if self.cuda_peak_mb is None else round(self.cuda_peak_mb, 1),
            "mask_count": len(self.proposals.boxes_xyxy),
            "found": self.found,
            "box_xyxy": None if self.box_xyxy is None else [round(float(v), 1) for v in self.box_xyxy],
            "agreement": None,
        }
        if seed is not None:
            out["ratio_vs_seed"] = round(self.total_ms() / seed.total_ms(), 4)
            out["speedup_vs_seed"] = round(seed.total_ms() / self.total_ms(), 2)
            out["agreement"] = {
                "chosen_box_iou": None if self.box_xyxy is None or seed.box_xyxy is None
                else round(box_iou(self.box_xyxy, seed.box_xyxy), 4),
                "seed_masks_matched": round(matched_fraction(seed.proposals.masks, self.proposals.masks), 4),
                "match_iou": MATCH_IOU,
            }
        return out


def _run_mode(mode: str, locator, image: np.ndarray, command: str, text, repeats: int) -> _ModeRuns:
    stages, proposals, box, found = [], None, None, False
    for _ in range(repeats):
        locator.forget_frames()  # every repeat pays for its own embedding, except where prepared on purpose
        if mode == "seed":
            timings, proposals, box = _seed_once(locator, image, text)
            found = box is not None
        else:
            locator.config = replace(locator.config, mode="exact" if mode == "exact" else "fast")
            timings = {}
            frame = None
            if mode == "fast_prepared":
                started = time.perf_counter()
                frame = locator.prepare(image)
                timings["prepare (not in total)"] = (time.perf_counter() - started) * 1e3
            with _recording(locator.proposer) as seen:
                result = locator.locate(image, command, frame=frame)
            proposals = seen["proposals"]
            timings.update(result.timings_ms)
            found = bool(result.found)
            best = result if result.found else result.best
            box = None if best is None else best.box_xyxy
        stages.append(timings)
    locator.config = replace(locator.config, mode="exact")
    return _ModeRuns(MODE_LABELS[mode], stages, proposals, box, found)


def _seed_once(locator, image: np.ndarray, text) -> tuple[dict[str, float], object, tuple | None]:
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
    box = None if len(scores) == 0 else tuple(float(v) for v in proposals.boxes_xyxy[int(np.argmax(scores))])
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

    from promptbox.proposals import _low_res_masks, _two_way_transformer

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
        shared = proposer._shared_image_side(frame.features)
        tokens = proposer._prompt_tokens(coords)
        chunks = [tokens[i : i + proposer.decode_batch] for i in range(0, len(tokens), proposer.decode_batch)]
        decoded = [_two_way_transformer(sam, shared, chunk) for chunk in chunks]

        def transformer_pass() -> None:
            for chunk in chunks:  # each chunk's result dropped before the next, as in the proposer
                _two_way_transformer(sam, shared, chunk)

        def masks_pass() -> None:
            for hs, keys in decoded:
                _low_res_masks(sam.mask_decoder, hs, keys, slice(1, 4))

        transformer = _median_ms(transformer_pass, device)
        masks = _median_ms(masks_pass, device)
        shared_ms = _median_ms(lambda: proposer._shared_image_side(frame.features), device)
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


# ------------------------------------------------------------------------------------------------------ report
def format_table(result: dict) -> str:
    cfg = result["config"]
    amg = cfg["amg"]
    lines = [
        f"promptbox bench: {cfg['image']} at {cfg['size'][0]}x{cfg['size'][1]}, \"{cfg['command']}\", "
        f"{cfg['device']} ({cfg['threads']} threads, {cfg['encoder_backend']} encoder), "
        f"{amg['points_per_side']}x{amg['points_per_side']} points, "
        f"thresholds {cfg['thresholds']} (iou {amg['pred_iou_thresh']}, stability {amg['stability_score_thresh']}), "
        f"median of {cfg['repeats']}",
        cfg["models"],
        "",
    ]
    header = (
        f"{'mode':<40}{'total s':>8}{'(min-max)':>14}{'embed':>8}{'propose':>9}{'match':>8}"
        f"{'x seed':>8}{'masks':>7}{'RSS MB':>8}{'box IoU':>9}{'seed masks':>11}"
    )
    lines += [header, "-" * len(header)]
    for mode in result["modes"].values():
        st = mode["stages"]
        total = st["total"]
        agreement = mode["agreement"] or {}

        ratio = mode["ratio_vs_seed"]
        box_iou_value = agreement.get("chosen_box_iou")
        matched = agreement.get("seed_masks_matched")
        spread = f"({total['min'] / 1000:.2f}-{total['max'] / 1000:.2f})"
        lines.append(
            f"{mode['label']:<40}{total['median'] / 1000:>8.2f}{spread:>14}"
            f"{_seconds(st, 'embedding'):>8}{_seconds(st, 'proposing'):>9}{_seconds(st, 'matching'):>8}"
            f"{'-' if ratio is None else f'{ratio:.3f}':>8}{mode['mask_count']:>7}{mode['peak_rss_mb']:>8.0f}"
            f"{'-' if box_iou_value is None else f'{box_iou_value:.2f}':>9}"
            f"{'-' if matched is None else f'{matched:.0%}':>11}"
        )
    lines.append("")
    lines.append(
        "x seed: median total / seed's (lower is faster); RSS: process peak after the mode; box IoU: chosen box vs "
        f"seed's; seed masks: share of the seed's masks matched at IoU >= {MATCH_IOU}"
    )
    decoder = result.get("decoder_ms_per_prompt")
    if decoder:
        lines.append(
            f"decoder per point prompt ({decoder['prompts']} prompts): upstream {decoder['upstream']:.1f} ms, "
            f"promptbox {decoder['promptbox_total']:.1f} ms ({decoder['promptbox_transformer']:.1f} transformer + "
            f"{decoder['promptbox_masks']:.1f} mask logits; {decoder['promptbox_shared_per_frame']:.1f} ms per frame "
            "shared)"
        )
    return "\n".join(lines)


def _seconds(stages: dict, name: str) -> str:
    return f"{stages[name]['median'] / 1000:.2f}" if name in stages else "-"


# ----------------------------------------------------------------------------------------------------- helpers
def load_image(path: str | None, size: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    """RGB uint8 frame and a label for the report: the file, else the bundled sample, else scikit-image's coffee."""
    import cv2

    if path is not None:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"image {path!r} could not be read; accepted: an existing png/jpg/bmp/tiff file")
        image, label = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), Path(path).name
    else:
        bundled = Path(__file__).parent / "data" / "coffee.png"
        bgr = cv2.imread(str(bundled), cv2.IMREAD_COLOR) if bundled.exists() else None
        if bgr is not None:
            image, label = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "coffee.png (bundled)"
        else:
            from skimage import data

            image, label = data.coffee(), "skimage coffee"
    if size is not None and (image.shape[1], image.shape[0]) != size:
        interpolation = cv2.INTER_AREA if size[0] < image.shape[1] else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interpolation)
    return np.ascontiguousarray(image), label


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
    """Keep the Proposals a Locator's call produced (for the mask-set agreement), without changing them."""
    seen: dict = {}
    names = ("propose", "propose_points", "propose_upstream")
    for name in names:
        method = getattr(proposer, name)

        def wrapper(*args, _method=method, **kwargs):
            seen["proposals"] = _method(*args, **kwargs)
            return seen["proposals"]

        setattr(proposer, name, wrapper)  # shadows the method on this instance only
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


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _reset_cuda_peak(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _cuda_peak_mb(device: str) -> float | None:
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
