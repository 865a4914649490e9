"""The bench's options: the command line, and the checks that turn it into BenchOptions."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from promptbox.config import ENCODER_BACKENDS, FAST_MAPS

THRESHOLDS = ("auto", "zero", "seed")
WORLD_SCENES = 3
WORLD_SEED = 20261124  # not a training seed (world training scenes come from split "train")
REPEATS = 3  # fast modes: timed runs per frame
EXACT_REPEATS = 1  # exact mode costs tens of seconds a frame with world weights on 2 cores
SEED_FRAMES = 1  # the seed costs minutes a frame on 2 cores: one frame gives its ratio


@dataclass(frozen=True)
class BenchOptions:
    images: str | None = None  # None: world scenes
    command: str | None = None  # None: each world scene's own query, or labels.jsonl's, or DEFAULT_COMMAND
    scenes: int = WORLD_SCENES
    world_seed: int = WORLD_SEED
    world_dir: str | None = None  # where generated scenes are kept; None: build/bench-world or a temp dir
    repeats: int = REPEATS
    exact_repeats: int = EXACT_REPEATS
    seed_frames: int = SEED_FRAMES
    skip_seed: bool = False
    device: str = "cpu"
    size: tuple[int, int] | None = (640, 480)  # (W, H): world scenes are drawn at it, images resized to it
    points_per_side: int = 16
    thresholds: str = "auto"  # auto: zero with random weights, seed otherwise
    random_weights: bool = False
    sam_checkpoint: str | None = None  # None: the world MobileSAM (random stand-in with random_weights)
    clip_model: str | None = None  # None: the world CLIP (tinyclip-61m's dimensions with random_weights)
    threads: int | None = None
    encoder_backend: str = "torch"
    matching: tuple[str, ...] = ()  # LocatorConfig.matching values to run promptbox's modes with; (): the default
    decoder_prompts: int = 16  # prompts for the per-prompt decoder comparison; 0 skips it
    amg: tuple[tuple[str, object], ...] = ()  # other AmgSettings fields for promptbox's modes, e.g. full grid
    fast_fallback: bool = True  # LocatorConfig.fast_fallback for the fast modes
    fast_map: str = "auto"  # LocatorConfig.fast_map for the fast modes

    def __post_init__(self) -> None:
        _at_least("--scenes", self.scenes, 1)
        _at_least("--repeats", self.repeats, 1)
        _at_least("--exact-repeats", self.exact_repeats, 1)
        _at_least("--seed-frames", self.seed_frames, 1)
        _at_least("--points-per-side", self.points_per_side, 1)
        _at_least("--decoder-prompts", self.decoder_prompts, 0)
        if self.threads is not None:
            _at_least("--threads", self.threads, 1)
        if self.thresholds not in THRESHOLDS:
            raise ValueError(f"--thresholds {self.thresholds!r}: accepted: {', '.join(THRESHOLDS)}")
        if self.encoder_backend not in ENCODER_BACKENDS:
            raise ValueError(f"--encoder-backend {self.encoder_backend!r}: accepted: {', '.join(ENCODER_BACKENDS)}")
        if self.random_weights and self.sam_checkpoint:
            raise ValueError(
                f"--sam-checkpoint {self.sam_checkpoint!r} with --random-weights: random weights replace both "
                "checkpoints; accepted: one or the other"
            )


def _at_least(option: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{option} {value!r}: accepted: an integer of at least {minimum}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("workload (default: world scenes with the committed world weights)")
    what.add_argument("--images", metavar="DIR",
                      help="time these images instead of world scenes: a folder of png/jpg/bmp/tif files; its "
                           "labels.jsonl (promptbox eval format), if any, gives each image its first command")
    # dest is not "command": the promptbox CLI keeps the subcommand's name there.
    what.add_argument("--command", dest="bench_command",
                      help="one command for every frame (default: each world scene's own query; for --images, "
                           "labels.jsonl's or \"take the coffee cup\")")
    what.add_argument("--scenes", type=int, default=WORLD_SCENES, help=f"world scenes (default {WORLD_SCENES})")
    what.add_argument("--world-seed", type=int, default=WORLD_SEED, help=f"world stream (default {WORLD_SEED})")
    what.add_argument("--world-dir", help="keep generated scenes here (default: build/bench-world, else a temp dir)")
    what.add_argument("--size", default="640x480",
                      help="frame size WxH (default 640x480): world scenes are drawn at it, images resized; 'orig' "
                           "keeps images as they are")
    runs = parser.add_argument_group("runs")
    runs.add_argument("--repeats", type=int, default=REPEATS, help=f"fast modes: runs per frame (default {REPEATS})")
    runs.add_argument("--exact-repeats", type=int, default=EXACT_REPEATS,
                      help=f"exact mode: runs per frame (default {EXACT_REPEATS})")
    runs.add_argument("--seed-frames", type=int, default=SEED_FRAMES,
                      help=f"frames the seed configuration runs on, once each (default {SEED_FRAMES}); ratios and "
                           "agreement come from these frames")
    runs.add_argument("--skip-seed", action="store_true", help="leave out the (slow) seed configuration")
    runs.add_argument("--decoder-prompts", type=int, default=16, help="prompts for the decoder comparison (0: skip)")
    models = parser.add_argument_group("models")
    models.add_argument("--random-weights", action="store_true",
                        help="random-init MobileSAM vit_t and CLIP (tinyclip-61m unless --model names another): the "
                             "compute-only worst case; answers and agreement mean nothing")
    models.add_argument("--sam-checkpoint", help="mobile_sam.pt (default: weights/world/mobile_sam.pt)")
    models.add_argument("--model", help="CLIP: a name (tinyclip-61m, ...) or a directory (default: weights/world/"
                                        "world-clip)")
    models.add_argument("--matching", help="comma-separated LocatorConfig.matching values (e.g. shortlist,crops): "
                                           "promptbox's modes run once with each (default: the config's)")
    models.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    models.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    models.add_argument("--encoder-backend", choices=ENCODER_BACKENDS, default="torch",
                        help="torch or ONNX Runtime for MobileSAM's encoder and mask decoder and CLIP's text and "
                             "image towers, in promptbox's modes (the seed always runs torch); onnx-int8: decoder "
                             "and CLIP towers int8-quantised")
    models.add_argument("--points-per-side", type=int, default=16, help="AMG grid (default 16, the seed's)")
    models.add_argument("--amg", action="append", default=[], metavar="NAME=VALUE",
                        help="another AMG setting for promptbox's modes, e.g. --amg skip_covered_points=false "
                             "(every grid point, as upstream); repeatable")
    models.add_argument("--no-fast-fallback", dest="fast_fallback", action="store_false",
                        help="fast modes answer from the similarity map's prompts alone (default: they fall back to "
                             "exact mode's grid when nothing those prompts propose passes min_score)")
    models.add_argument("--fast-map", choices=FAST_MAPS, default="auto",
                        help="fast modes' similarity map: tokens, windows, both, or auto (default: both on a GPU, "
                             "tokens on a CPU; LocatorConfig.fast_map)")
    models.add_argument("--thresholds", choices=THRESHOLDS, default="auto",
                        help="AMG IoU/stability thresholds: seed (0.8/0.85), zero (keep every mask), auto: zero iff "
                             "weights are random")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        images=args.images,
        command=args.bench_command,
        scenes=args.scenes,
        world_seed=args.world_seed,
        world_dir=args.world_dir,
        repeats=args.repeats,
        exact_repeats=args.exact_repeats,
        seed_frames=args.seed_frames,
        skip_seed=args.skip_seed,
        device=args.device,
        size=parse_size(args.size),
        points_per_side=args.points_per_side,
        thresholds=args.thresholds,
        random_weights=args.random_weights,
        sam_checkpoint=args.sam_checkpoint,
        clip_model=args.model,
        threads=args.threads,
        encoder_backend=args.encoder_backend,
        matching=parse_matching(args.matching),
        decoder_prompts=args.decoder_prompts,
        amg=parse_amg(args.amg),
        fast_fallback=args.fast_fallback,
        fast_map=args.fast_map,
    )


def parse_amg(pairs: list[str]) -> tuple[tuple[str, object], ...]:
    """--amg NAME=VALUE pairs, checked and typed as `promptbox locate --amg` does; the grid has its own option."""
    from promptbox.cli import _amg_overrides

    overrides = _amg_overrides(pairs)
    if "amg_points_per_side" in overrides:
        raise ValueError("--amg points_per_side: accepted: --points-per-side N, which the seed uses too")
    return tuple((name.removeprefix("amg_"), value) for name, value in overrides.items())


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None or text.lower() in ("orig", "original", "none"):
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: accepted: WxH, e.g. 640x480, or 'orig'") from None
    if width < 8 or height < 8:
        raise ValueError(f"--size {text!r}: accepted: at least 8x8")
    return width, height


def parse_matching(text: str | None) -> tuple[str, ...]:
    """Values are checked against LocatorConfig's own list, so the bench follows the setting as it changes."""
    if not text:
        return ()
    from dataclasses import fields

    from promptbox import config

    if "matching" not in {f.name for f in fields(config.LocatorConfig)}:
        raise ValueError(f"--matching {text!r}: this promptbox has no LocatorConfig.matching setting")
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    accepted = getattr(config, "MATCHING", ())
    for value in values:
        if accepted and value not in accepted:
            raise ValueError(f"--matching {text!r}: {value!r} is not a matching; accepted: {', '.join(accepted)}")
    if not values or len(set(values)) != len(values):
        raise ValueError(f"--matching {text!r}: accepted: distinct comma-separated values")
    return values
