"""The world table with the selection rules of an earlier commit, for before/after comparisons of selection changes.

It loads `selection.py` of REV from git history and runs the current harness with it in place of today's scoring
and selection (calibration against the scenery phrases only, that commit's select()). Everything else (world,
masks, CLIP, matching, metrics) is today's, so the difference is the selection rules alone.

    python tools/world/compare_selection.py 574bb67 build/world/val --model weights/world/world-clip \
        [--sam-checkpoint weights/world/mobile_sam.pt]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

import promptbox.locator as locator_module
from promptbox.config import LocatorConfig
from promptbox.evaluation.dataset import load_dataset
from promptbox.evaluation.report import build_report, format_table
from promptbox.evaluation.runner import run_eval
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.selection import PhraseScores


def old_selection(rev: str) -> types.ModuleType:
    # A file path stands for a checkout without git history (a device copy of the tree).
    if Path(rev).is_file():
        source = Path(rev).read_text(encoding="utf-8")
    else:
        source = subprocess.check_output(["git", "show", f"{rev}:promptbox/src/promptbox/selection.py"], text=True)
    module = types.ModuleType(f"selection_{rev}")
    exec(compile(source, f"{rev}:selection.py", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module


def install(old: types.ModuleType) -> None:
    def score(self, regions, phrase, negatives=(), blind=None):  # that commit had no colour-blind reading
        vector = self.matcher.encode_text(phrase).vector
        scenery = self.matcher.encode_texts(old.BACKGROUND_PHRASES)
        sim = (regions @ vector.to(regions)).float().cpu().numpy()
        rival = (regions @ scenery.to(regions).T).float().cpu().numpy()
        confidence = old.calibrate(sim, rival, logit_scale=self.matcher.logit_scale)
        return PhraseScores(phrase, sim, confidence, np.ones_like(sim, bool))

    def select(masks, boxes, sim, conf, target, *, min_score, part_margin, top_k, **_ignored):
        # Older select()s take an (N, H, W) stack; proposals now hold BoxMasks.
        dense = masks.to_dense() if hasattr(masks, "to_dense") else masks
        return old.select(dense, boxes, sim, conf, target, min_score=min_score, part_margin=part_margin,
                          top_k=top_k)

    locator_module.Locator._score = score
    locator_module.select = select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", help="the commit whose selection.py to use, or that selection.py's path")
    parser.add_argument("dataset", type=Path, help="a folder from `promptbox world generate`")
    parser.add_argument("--model", required=True, help="the CLIP directory")
    parser.add_argument("--mode", default="exact,fast")
    parser.add_argument("--sam-checkpoint", default=None,
                        help="world mobile_sam.pt; without it the scenes' exact masks stand in (--world-masks)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    install(old_selection(args.rev))
    config = LocatorConfig(clip_model=args.model, sam_checkpoint=args.sam_checkpoint, device=args.device)
    proposer = None if args.sam_checkpoint else WorldMaskProposer.for_dataset(args.dataset, config.amg)
    locator = locator_module.Locator(config, proposer=proposer)
    run = run_eval(locator, load_dataset(args.dataset), tuple(args.mode.split(",")))
    print(f"selection of {args.rev}")
    print(format_table(build_report(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
