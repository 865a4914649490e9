"""Ask for every class of the catalogue, present or not, in N world scenes, and count what the answers do: a present
class must be boxed on an instance, an absent one refused. --parts asks for every part of every class instead ("pick
the handle of the mug"): boxed on that part of an instance, or refused when no such object is there. Broader than the
eval's absent queries (one or two a scene). Exact mode, world CLIP; the world's masks unless --sam-checkpoint is
given. [SYNTHETIC-WORLD WEIGHTS]: says nothing of real frames.

    python tools/world/class_probe.py --seed 4242 --scenes 30 [--parts] [--sam-checkpoint weights/world/mobile_sam.pt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from promptbox.config import LocatorConfig
from promptbox.detection import Detection
from promptbox.evaluation.metrics import box_iou
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.locator import Locator
from promptbox.world.catalogue import CLASSES, UNSEEN_PAIRS
from promptbox.world.scene import generate_scene

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"
SIZE = (640, 480)


def _edges(box) -> np.ndarray:
    return np.add(box, [0, 0, 1, 1])  # the world's inclusive boxes as pixel edges, as answers are


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=4242, help="world stream (not the gate's 20261123)")
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--parts", action="store_true", help='"pick the P of the C" for every part P of every class')
    parser.add_argument("--sam-checkpoint", help="world MobileSAM instead of the world's masks")
    args = parser.parse_args()
    extra = {"sam_checkpoint": args.sam_checkpoint} if args.sam_checkpoint else {}
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), mode="exact", **extra)
    oracle = None if args.sam_checkpoint else WorldMaskProposer(args.seed, args.scenes, SIZE, settings=config.amg)
    locator = Locator(config, proposer=oracle)
    # [hits, queries]; "present, unseen colours": every instance of the class is in a colour it was never trained in
    counts = {"present": [0, 0], "present, unseen colours": [0, 0], "boxed on something else": [0, 0],
              "absent, falsely boxed": [0, 0]}
    for index in range(args.scenes):
        scene = generate_scene(args.seed, index, SIZE, split="val")
        for cls in sorted(CLASSES):
            objects = [o for o in scene.objects if o.cls == cls]
            for part in CLASSES[cls].parts if args.parts else (None,):
                result = locator.locate(scene.image, f"pick the {part} of the {cls}" if part else f"pick the {cls}")
                found = isinstance(result, Detection)
                if not objects:
                    counts["absent, falsely boxed"][0] += found
                    counts["absent, falsely boxed"][1] += 1
                    continue
                truth = [_edges(p.box_xyxy) for o in objects for p in o.parts if p.name == part] if part else \
                    [_edges(o.box_xyxy) for o in objects]
                right = found and bool(truth) and max(box_iou(result.box_xyxy, b) for b in truth) >= 0.5
                unseen = all((o.colour, o.cls) in UNSEEN_PAIRS for o in objects)
                kind = "present, unseen colours" if unseen else "present"
                counts[kind][0] += right
                counts[kind][1] += 1
                counts["boxed on something else"][0] += found and not right
                counts["boxed on something else"][1] += 1
    print(locator.describe())
    for name, (hits, queries) in counts.items():
        print(f"{name + ':':<34} {hits} of {queries}")


if __name__ == "__main__":
    main()
