"""`promptbox world generate OUT --scenes N --seed S [--size 640x480]`: write a world evaluation folder."""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from promptbox.world.commands import TAGS
from promptbox.world.generate import LABELS_FILE, write_dataset
from promptbox.world.scene import SPLITS

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def main(argv: list[str]) -> int:
    """Run `promptbox world ...`; returns the exit code (0 done, 2 usage error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.action is None:
        parser.print_help()
        return 2
    out = write_dataset(args.out, args.scenes, args.seed, args.size, split=args.split)
    tags: Counter[str] = Counter()
    queries = 0
    with (out / LABELS_FILE).open(encoding="utf-8") as labels:
        for line in labels:
            queries += 1
            tags.update(json.loads(line)["tags"])
    counts = ", ".join(f"{t} {tags[t]}" for t in TAGS)
    print(f"{out}: {args.scenes} scenes, {queries} queries ({counts})")
    return 0


def _size(text: str) -> tuple[int, int]:
    match = _SIZE.match(text)
    if match is None or int(match.group(1)) < 64 or int(match.group(2)) < 48:
        raise argparse.ArgumentTypeError(f"--size {text!r} is not supported; accepted: WIDTHxHEIGHT such as "
                                         "640x480, at least 64x48")
    return int(match.group(1)), int(match.group(2))


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--scenes {text!r} is not supported; accepted: a whole number of at least 1")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptbox world",
        description="The synthetic tabletop world: scenes with exact truth, for measuring the pipeline's logic "
        "(not real-world accuracy).",
    )
    sub = parser.add_subparsers(dest="action")
    gen = sub.add_parser("generate", help="write OUT/images, OUT/masks, OUT/depth, OUT/camera_info.json and "
                         "OUT/labels.jsonl for `promptbox eval`")
    gen.add_argument("out", type=Path, help="output folder (created; existing files of the same names are replaced)")
    gen.add_argument("--scenes", type=_count, default=50, help="number of scenes (default 50)")
    gen.add_argument("--seed", type=int, default=0, help="scene stream; the same seed gives the same bytes")
    gen.add_argument("--size", type=_size, default=(640, 480), help="frame size WIDTHxHEIGHT (default 640x480)")
    gen.add_argument("--split", choices=sorted(SPLITS), default="val",
                     help="'train' never shows the held-out colour-class pairs; 'val' (default) often does")
    return parser
