"""Per-stage CPU times of the torch and ONNX Runtime backends on world frames, interleaved in one process so that
ratios hold on a loaded machine. Usage: python tools/onnx_stages.py [backends] [repeats]
(default torch,onnx 3). Prints a markdown table of median ms and each backend's ratio to the first."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from promptbox import weights
from promptbox.config import AmgSettings
from promptbox.matching import PROMPT_TEMPLATES, Matcher
from promptbox.proposals import MaskProposer
from promptbox.world import generate_scene

WORLD = Path(__file__).resolve().parents[1] / "weights" / "world"
STAGES = ("encoder", "decoder", "upscale", "text", "crops")


def main() -> None:
    backends = (sys.argv[1] if len(sys.argv) > 1 else "torch,onnx").split(",")
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    sam, _ = weights.load_sam(str(WORLD / "mobile_sam.pt"), "cpu", False)
    clip, tokenizer, _ = weights.load_clip(str(WORLD / "world-clip"), "cpu", False)
    scenes = [generate_scene(20261124, i, (640, 480)) for i in range(2)]
    proposers = {b: MaskProposer(sam, AmgSettings(), "cpu", b) for b in backends}
    matchers = {b: Matcher(clip, tokenizer, "cpu", backend=b) for b in backends}
    phrases = [f"{c} {n}" for c in ("red", "blue", "green", "small") for n in ("mug", "screwdriver", "toy car")]
    times = {b: {k: [] for k in STAGES} for b in backends}
    for b in backends:  # exports and sessions before timing
        frame = proposers[b].embed(scenes[0].image)
        proposers[b].propose_points(frame, np.array([[320.0, 240.0]]))
        matchers[b]._encode_phrases(phrases[:1])
        matchers[b].encode_regions(scenes[0].image, np.array([[0.0, 0.0, 63.0, 63.0]]))
    for r in range(repeats):
        for scene in scenes:
            boxes = np.array([o.box_xyxy for o in scene.objects], np.float64)
            masks = np.stack([o.mask for o in scene.objects])
            points = np.random.default_rng(r).random((24, 2)) * [640, 480]
            for b in backends:
                frame = proposers[b].embed(scene.image)
                times[b]["encoder"].append(frame.timings_ms["encoder"])
                proposals = proposers[b].propose_points(frame, points)
                times[b]["decoder"].append(proposals.timings_ms["decoder"])
                times[b]["upscale"].append(proposals.timings_ms["upscale"])
                started = time.perf_counter()
                matchers[b]._encode_phrases(phrases)  # not encode_texts: its cache would answer the repeats
                times[b]["text"].append((time.perf_counter() - started) * 1e3)
                started = time.perf_counter()
                for _ in range(4):
                    matchers[b].encode_regions(scene.image, boxes, masks)
                times[b]["crops"].append((time.perf_counter() - started) * 1e3)
    print(f"{torch.get_num_threads()} torch threads; median ms over {repeats} x {len(scenes)} world frames (640x480); "
          f"24 point prompts a frame (decoder, upscale), {len(phrases)} phrases x {len(PROMPT_TEMPLATES)} templates "
          "(text), 4 x the scene's masked object crops (crops)")
    others = backends[1:]
    print("| stage | " + " | ".join(f"{b} ms" for b in backends) + " | "
          + " | ".join(f"{b} / {backends[0]}" for b in others) + " |")
    print("|---" * (len(backends) + len(others) + 1) + "|")
    for stage in STAGES:
        medians = [statistics.median(times[b][stage]) for b in backends]
        print(f"| {stage} | " + " | ".join(f"{m:.0f}" for m in medians) + " | "
              + " | ".join(f"{m / medians[0]:.2f}" for m in medians[1:]) + " |")


if __name__ == "__main__":
    main()
