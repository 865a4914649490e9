"""Ask for every colour of every class present in N world scenes and count what the answers do: a colour present
must be boxed on an instance of that colour, an absent one refused. Broader than the eval's attribute and absent
queries (which ask one absent colour per scene), for judging a colour rule. Exact mode, world CLIP; the world's
masks unless --sam-checkpoint is given. [SYNTHETIC-WORLD WEIGHTS]: says nothing of real frames.

    python tools/world/colour_probe.py --seed 4242 --scenes 30 [--sam-checkpoint weights/world/mobile_sam.pt]
    python tools/world/colour_probe.py --seed 20261123 --scenes 12 --one

--one asks "pick the C one" (a colour and no class) for every colour C instead: a colour that exactly one object
has must be boxed on it, an absent one refused.

To compare with another revision, run the same command with PYTHONPATH pointing at that revision's promptbox/src;
--selection REV keeps today's pipeline and swaps in only REV's selection rules (compare_selection.py's way), e.g.
574bb67 for the rules before calibration against competing names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from compare_selection import install, old_selection  # a sibling script: run from its folder, as documented

from promptbox.config import LocatorConfig
from promptbox.detection import Detection
from promptbox.evaluation.metrics import box_iou
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.locator import Locator
from promptbox.world.catalogue import CLASSES, UNSEEN_PAIRS
from promptbox.world.scene import generate_scene

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"
SIZE = (640, 480)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=4242, help="world stream (not the gate's 20261123)")
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--sam-checkpoint", help="world MobileSAM instead of the world's masks")
    parser.add_argument("--one", action="store_true", help='"pick the C one" for every colour C')
    parser.add_argument("--selection", metavar="REV", help="the selection rules of commit REV (compare_selection.py)")
    args = parser.parse_args()
    if args.selection:
        install(old_selection(args.selection))
    extra = {"sam_checkpoint": args.sam_checkpoint} if args.sam_checkpoint else {}
    config = LocatorConfig(clip_model=str(WEIGHTS / "world-clip"), mode="exact", **extra)
    oracle = None if args.sam_checkpoint else WorldMaskProposer(args.seed, args.scenes, SIZE, settings=config.amg)
    locator = Locator(config, proposer=oracle)
    if args.one:
        _colour_alone(locator, args.seed, args.scenes)
        return
    # [hits, queries]; an absent pair is "absent unseen" when the world CLIP never saw that colour on that class
    counts = {"seen": [0, 0], "unseen": [0, 0], "absent": [0, 0], "absent unseen": [0, 0], "wrong": [0, 0]}
    for index in range(args.scenes):
        scene = generate_scene(args.seed, index, SIZE, split="val")
        for cls in sorted({o.cls for o in scene.objects}):
            for colour in CLASSES[cls].colours:
                truth = [np.add(o.box_xyxy, [0, 0, 1, 1]) for o in scene.objects if (o.cls, o.colour) == (cls, colour)]
                result = locator.locate(scene.image, f"pick the {colour} {cls}")
                found = isinstance(result, Detection)
                right = found and bool(truth) and max(box_iou(result.box_xyxy, b) for b in truth) >= 0.5
                unseen = (colour, cls) in UNSEEN_PAIRS
                if not truth:
                    for kind in ("absent", "absent unseen") if unseen else ("absent",):
                        counts[kind][0] += found  # a false box
                        counts[kind][1] += 1
                    continue
                kind = "unseen" if unseen else "seen"
                counts[kind][0] += right
                counts[kind][1] += 1
                counts["wrong"][0] += found and not right
                counts["wrong"][1] += 1
    print(locator.describe())  # names the synthetic-world weights and the oracle masks
    print(f"present, seen pairs, boxed right:  {counts['seen'][0]} of {counts['seen'][1]}")
    print(f"present, unseen pairs, boxed right: {counts['unseen'][0]} of {counts['unseen'][1]}")
    print(f"present, boxed on something else:  {counts['wrong'][0]} of {counts['wrong'][1]}")
    print(f"absent colours, false boxes:       {counts['absent'][0]} of {counts['absent'][1]}")
    print(f"  of them unseen pairs:            {counts['absent unseen'][0]} of {counts['absent unseen'][1]}")



def _colour_alone(locator: Locator, seed: int, scenes: int) -> None:
    colours = sorted({c for spec in CLASSES.values() for c in spec.colours})
    unique, absent = [0, 0], [0, 0]  # [hits, queries]
    for index in range(scenes):
        scene = generate_scene(seed, index, SIZE, split="val")
        for colour in colours:
            truth = [np.add(o.box_xyxy, [0, 0, 1, 1]) for o in scene.objects if o.colour == colour]
            if len(truth) > 1:
                continue  # which of them is meant is not for the probe to say
            result = locator.locate(scene.image, f"pick the {colour} one")
            found = isinstance(result, Detection)
            if truth:
                unique[0] += found and box_iou(result.box_xyxy, truth[0]) >= 0.5
                unique[1] += 1
            else:
                absent[0] += found
                absent[1] += 1
    print(locator.describe())
    print(f"a colour one object has, boxed on it: {unique[0]} of {unique[1]}")
    print(f"absent colours, false boxes:          {absent[0]} of {absent[1]}")


if __name__ == "__main__":
    main()
