"""What the colour-blind reading costs in crops: for the eval folder's queries of one tag (default `attribute`; `class`
or `part` for phrases without a colour), the regions cropped as they are and the regions cropped turned
(colour_blind.py; both turns counted) per query, with world MobileSAM and the world CLIP; then the time of
TinyCLIP-61M's image tower (the real architecture, random weights) for calls of 1, 2, 4 and 8 crops on this machine,
which prices those counts for the real model. [SYNTHETIC-WORLD WEIGHTS] for the counts; the timings are compute only.

    python tools/world/colour_cost.py build/world/val --threads 2 [--tag class]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from promptbox.config import LocatorConfig
from promptbox.evaluation.dataset import load_dataset
from promptbox.locator import Locator
from promptbox.masks import BoxMasks
from promptbox.matching import Matcher
from promptbox.stand_ins import random_clip

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"


def crops_per_query(folder: Path, mode: str, tag: str) -> np.ndarray:
    """(Q, 3): per query of `tag`, the regions cropped as they are, the regions cropped turned (both turns counted;
    both go in one call of the image tower) and the calls for turned crops."""
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), sam_checkpoint=str(WEIGHTS / "mobile_sam.pt"),
                           mode=mode)
    locator = Locator(config)
    counts = [0, 0, 0]
    encode = locator.matcher.encode_turned

    def counted(image, boxes, masks, turns):
        if masks is not None and len(boxes):
            counts[turns != (0,)] += len(boxes) * len(turns)
            counts[2] += turns != (0,)
        return encode(image, boxes, masks, turns)

    locator.matcher.encode_turned = counted
    dataset = load_dataset(folder)
    rows = []
    for name, queries in dataset.frames().items():
        image = dataset.load_image(name)
        locator.prepare(image)  # the frame's own crops (a warm-up, fast mode's windows) are not the query's
        for query in (q for q in queries if tag in q.tags):
            before = list(counts)
            locator.locate(image, query.command)
            rows.append([now - then for now, then in zip(counts, before, strict=True)])
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def tinyclip_ms(sizes: tuple[int, ...] = (1, 2, 4, 8), repeats: int = 5) -> dict[int, float]:
    """p50 ms of one image tower call of n masked crops with TinyCLIP-61M's architecture (n turned crops: n / 2
    regions in both turns, as colour_blind asks them, or n regions in one turn)."""
    model, tokenizer = random_clip()
    matcher = Matcher(model.eval(), tokenizer)
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    dense = np.zeros((max(sizes), 480, 640), bool)
    boxes = []
    for i in range(max(sizes)):
        x0 = 20 + 75 * i
        dense[i, 100:180, x0:x0 + 60] = True
        boxes.append([x0, 100, x0 + 59, 179])
    masks, boxes = BoxMasks.from_dense(dense), np.array(boxes, np.float64)
    out = {}
    for n in sizes:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            matcher.encode_regions(image, boxes[:n], masks[list(range(n))], turn=1)  # one call, as encode_turned
            runs.append(time.perf_counter() - started)
        out[n] = 1000 * float(np.median(runs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder from `promptbox world generate`")
    parser.add_argument("--tag", default="attribute")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for mode in ("exact", "fast"):
        rows = crops_per_query(args.folder, mode, args.tag)
        print(f"[SYNTHETIC-WORLD WEIGHTS] {mode}, {len(rows)} {args.tag} queries: cropped {rows[:, 0].mean():.1f} a "
              f"query (max {rows[:, 0].max()}), turned {rows[:, 1].mean():.1f} (max {rows[:, 1].max()}) in "
              f"{rows[:, 2].mean():.1f} calls (max {rows[:, 2].max()})")
    timings = tinyclip_ms()
    print(f"[RANDOM WEIGHTS] TinyCLIP-61M image tower, one call of n crops, p50 ms (torch threads "
          f"{torch.get_num_threads()}): " + ", ".join(f"{n}: {ms:.0f}" for n, ms in timings.items()))


if __name__ == "__main__":
    main()
