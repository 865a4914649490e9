"""How often the matching shortlist picks what crop-everything picks, on a world folder: both matchings answer every
query with the same proposals (oracle masks, or the world MobileSAM with --sam-checkpoint), then the answers are
compared box by box and each run's accuracy is printed.

    python tools/world/compare_matching.py build/world/val --model weights/world/world-clip --mode exact [--sizes 5,8]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from promptbox.config import LocatorConfig
from promptbox.evaluation.dataset import load_dataset
from promptbox.evaluation.report import build_report
from promptbox.evaluation.runner import run_eval
from promptbox.evaluation.world_masks import WorldMaskProposer
from promptbox.locator import Locator


def _locator(config: LocatorConfig, folder: Path, sam: bool) -> Locator:
    return Locator(config) if sam else Locator(config, proposer=WorldMaskProposer.for_dataset(folder, config.amg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--sam-checkpoint")
    parser.add_argument("--mode", default="exact")
    parser.add_argument("--sizes", default="5", help="shortlist sizes to compare with crop-everything")
    args = parser.parse_args()
    dataset = load_dataset(args.folder)
    base = LocatorConfig(clip_model=args.model, sam_checkpoint=args.sam_checkpoint, matching="crops")
    runs = {"crops": base, **{f"shortlist {n}": base.with_overrides(matching="shortlist", shortlist_size=int(n))
                              for n in args.sizes.split(",")}}
    answers, matching_ms = {}, {}
    for name, config in runs.items():
        run = run_eval(_locator(config, args.folder, args.sam_checkpoint is not None), dataset, [args.mode])
        report = build_report(run)
        answers[name] = [(r.query.command, r.answer) for r in run.results]
        matching_ms[name] = [r.timings_ms.get("matching", 0.0) for r in run.results]
        accuracy = report.per_mode[args.mode]["all"].metrics.accuracy.value
        print(f"{name}: accuracy {accuracy:.3f}, matching p50 {statistics.median(matching_ms[name]):.0f} ms")
    for name in runs:
        if name == "crops":
            continue
        same = sum(a == b for a, b in zip(answers["crops"], answers[name], strict=True))
        print(f"{name}: the same answer as crop-everything on {same} of {len(answers[name])} queries")


if __name__ == "__main__":
    main()
