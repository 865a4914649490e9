"""`promptbox eval DATASET ...` and `promptbox eval convert-coco INSTANCES IMAGES OUT`.

Exit codes: 0 success, 2 usage, input or missing-weights error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptbox.config import MODES

EXIT_OK, EXIT_ERROR = 0, 2
LocatorFactory = Callable[[Any], Any]  # LocatorConfig -> a Locator (tests pass an oracle)


def main(argv: list[str], *, make_locator: LocatorFactory | None = None) -> int:
    """Run `promptbox eval`; `make_locator` replaces Locator(config), so tests can evaluate an oracle."""
    if argv[:1] == ["convert-coco"]:
        return _convert(argv[1:])
    parser = _eval_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits 2 on a usage error and 0 on --help
        return EXIT_ERROR if stop.code else EXIT_OK
    return _evaluate(args, make_locator)


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptbox eval",
        description="Measure accuracy, failure rates and latency on a labelled folder (images + labels.jsonl). "
        "`promptbox eval convert-coco --help` makes such a folder from COCO instances.",
    )
    parser.add_argument("dataset", type=Path, help="folder with labels.jsonl and the images it names")
    parser.add_argument("--mode", default="exact", help=f"comma-separated modes to compare: {','.join(MODES)}")
    parser.add_argument("--model", default="tinyclip-61m", help="CLIP: tinyclip-61m, tinyclip-8m, clip-b32, or a path")
    parser.add_argument("--sam-checkpoint", help="path to mobile_sam.pt (default: resolve, see README)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--min-score", type=float, default=None, help="calibrated score below which: not found")
    from promptbox.cli import (
        add_backend_argument,
        add_fast_fallback_argument,
        add_fast_map_arguments,
        add_matching_arguments,
    )

    add_matching_arguments(parser)
    add_backend_argument(parser)
    add_fast_fallback_argument(parser)
    add_fast_map_arguments(parser)
    parser.add_argument("--amg", action="append", default=[], metavar="NAME=VALUE",
                        help="an AMG setting, e.g. --amg points_per_side=8 (repeatable)")
    parser.add_argument("--random-weights", action="store_true",
                        help="use random-init models where checkpoints are missing (plumbing checks; marked)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of the 16 worst cases here (png)")
    parser.add_argument("--limit", type=int, help="only the first N queries")
    parser.add_argument("--world-masks", action="store_true",
                        help="world folders only: MobileSAM's network is replaced by the scenes' exact masks "
                        "(grid, NMS and selection unchanged), to measure matching and selection alone; marked")
    return parser


def _evaluate(args: argparse.Namespace, make_locator: LocatorFactory | None) -> int:
    from promptbox.evaluation.dataset import load_dataset
    from promptbox.evaluation.report import build_report, format_table, report_dict
    from promptbox.evaluation.runner import check_modes, run_eval
    from promptbox.evaluation.sheet import write_sheet

    try:
        # Everything that can be refused without models is checked first: loading them takes seconds.
        modes = check_modes([m.strip() for m in args.mode.split(",") if m.strip()])
        dataset = load_dataset(args.dataset, limit=args.limit)
        config = _config(args, modes[0])
        proposer = None
        if args.world_masks:
            from promptbox.evaluation.world_masks import WorldMaskProposer

            proposer = WorldMaskProposer.for_dataset(args.dataset, config.amg)
        locator = _load_locator(config, make_locator, proposer)
        if locator is None:
            return EXIT_ERROR
        run = run_eval(locator, dataset, modes, on_frame=_progress)
        report = build_report(run)
        sheet = None
        if args.sheet is not None:
            sheet = write_sheet(args.sheet, dataset, run.results, marks=report.marks)
    except ValueError as error:
        print(f"promptbox eval: {error}", file=sys.stderr)
        return EXIT_ERROR

    print(json.dumps(report_dict(report), indent=2) if args.json else format_table(report))
    if sheet is not None:
        print(f"promptbox eval: wrote {len(sheet.cases)} worst cases to {sheet.path} "
              f"({sheet.width}x{sheet.height})", file=sys.stderr)
    return EXIT_OK


def _config(args: argparse.Namespace, mode: str):
    from promptbox.cli import _amg_overrides
    from promptbox.config import LocatorConfig

    config = LocatorConfig(
        sam_checkpoint=args.sam_checkpoint,
        clip_model=args.model,
        device=args.device,
        mode=mode,
        allow_random_weights=args.random_weights,
        matching=args.matching,
        shortlist_size=args.shortlist_size,
        encoder_backend=args.encoder_backend,
        fast_fallback=args.fast_fallback,
        fast_map=args.fast_map,
        map_window=args.map_window,
    ).with_overrides(**_amg_overrides(args.amg))
    if args.min_score is not None:
        config = config.with_overrides(min_score=args.min_score)
    return config


def _load_locator(config, make_locator: LocatorFactory | None, proposer=None):
    if make_locator is not None:
        return make_locator(config)
    from promptbox.locator import Locator
    from promptbox.weights import WeightsError

    try:
        return Locator(config, proposer=proposer)
    except WeightsError as error:
        print(f"promptbox eval: {error}", file=sys.stderr)
        return None


def _progress(done: int, total: int, name: str) -> None:
    print(f"promptbox eval: frame {done}/{total} {name}", file=sys.stderr, flush=True)


def _convert(argv: list[str]) -> int:
    from promptbox.evaluation.coco import convert_coco

    parser = argparse.ArgumentParser(
        prog="promptbox eval convert-coco",
        description="Convert COCO instances into an eval folder: OUT/labels.jsonl and OUT/images/.",
    )
    parser.add_argument("instances", type=Path, help="COCO instances json (images, annotations, categories)")
    parser.add_argument("images", type=Path, help="folder holding the images the json names")
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--absent", type=int, default=2, help="categories not in an image to ask for, per image")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing those absent categories")
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return EXIT_ERROR if stop.code else EXIT_OK
    try:
        result = convert_coco(args.instances, args.images, args.out, absent=args.absent, seed=args.seed)
    except (ValueError, OSError) as error:
        print(f"promptbox eval convert-coco: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {result.present + result.absent} queries ({result.present} present, {result.absent} absent) "
          f"on {result.images} images to {result.out}; skipped {result.crowd_skipped} crowd and "
          f"{result.degenerate_skipped} zero-area boxes")
    return EXIT_OK
