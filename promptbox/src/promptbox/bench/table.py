"""The bench's report as a text table, for `make bench` and the README."""

from __future__ import annotations

STAGES = (("embed", "embedding"), ("propose", "proposing"), ("match", "matching"))
# Whose prompts fast mode tried first, by the map it used (LocatorConfig.fast_map, resolved for the device).
_MAP_PROMPTS = {"tokens": "the token map's prompts", "windows": "the window map's prompts",
                "both": "the token and window maps' prompts"}


def format_table(result: dict) -> str:
    cfg = result["config"]
    amg = cfg["amg"]
    repeats = cfg["repeats"]
    seed_runs = f", seed once on {cfg['seed_frames']} frame(s)" if cfg["seed_frames"] else ", seed skipped"
    lines = [
        f"promptbox bench: {cfg['workload']['label']}",
        f"weights: {cfg['weights_label']}",
        f"models: {cfg['models']}",
        f"machine: {cfg['cpu']}, {cfg['cores']} cores; device {cfg['device']} ({cfg['threads']} torch threads, "
        f"{cfg['encoder_backend']} encoder)",
        f"AMG {amg['points_per_side']}x{amg['points_per_side']} points, thresholds {cfg['thresholds']} "
        f"(iou {amg['pred_iou_thresh']}, stability {amg['stability_score_thresh']}); runs per frame: fast "
        f"{repeats['fast']}, exact {repeats['exact']}{seed_runs}",
        "",
    ]
    header = (
        f"{'mode':<40}{'runs':>5}{'p50 s':>8}{'p95 s':>8}"
        + "".join(f"{name + ' p50':>12}" for name, _ in STAGES)
        + f"{'masks min/med/max':>19}{'RSS MB':>8}{'pid':>8}{'x faster':>10}{'box IoU':>9}{'seed masks':>11}"
    )
    lines += [header, "-" * len(header)]
    for mode in result["modes"].values():
        stages = mode["stages"]
        total = stages["total"]
        counts = mode["mask_counts"]
        agreement = mode["agreement"] or {}
        speedup = mode["speedup_vs_seed"]
        box = agreement.get("chosen_box_iou")
        matched = agreement.get("seed_masks_matched")
        lines.append(
            f"{mode['label']:<40}{total['n']:>5}{total['p50'] / 1000:>8.3f}{total['p95'] / 1000:>8.3f}"
            + "".join(f"{_seconds(stages, stage):>12}" for _, stage in STAGES)
            + f"{counts['min']:>7}/{counts['median']:g}/{counts['max']:<5}".rjust(19)
            + f"{mode['peak_rss_mb']:>8.0f}{mode['pid']:>8}"
            + f"{'-' if speedup is None else f'{speedup:.1f}x':>10}"
            + f"{'-' if box is None else f'{box:.2f}':>9}{'-' if matched is None else f'{matched:.0%}':>11}"
        )
        prepared = mode.get("prepared_total")
        if prepared:
            lines.append(f"{'    same runs, frame prepared':<40}{prepared['n']:>5}{prepared['p50'] / 1000:>8.3f}"
                         f"{prepared['p95'] / 1000:>8.3f}")
    lines += [
        "",
        "p50/p95 over every timed run (frames x runs); stage columns are p50 seconds. (d) leaves out the frame's "
        "preparation, as the node embeds frames before goals arrive; \"frame prepared\" under (b) is (b)'s runs "
        "less their embedding stage.",
        "masks: proposals after NMS per frame, as matching met them. RSS: the peak of the mode's own process (pid), "
        "models included.",
        "x faster: the seed's total / the mode's, p50 on the seed's frames, this run. box IoU: the chosen box against "
        f"the seed's (xyxy source-pixel edges); seed masks: share of the seed's masks matched at IoU >= "
        f"{_match_iou(result)}.",
    ]
    for mode in result["modes"].values():
        decoded = [f.get("prompts_decoded") for f in mode["frames"]]
        if mode["mode"] == "exact" and None not in decoded:
            skipping = "coarse to fine, covered points skipped" if amg.get("skip_covered_points") else "every point"
            lines.append(f"{mode['label']}: point prompts decoded per frame {decoded} of "
                         f"{amg['points_per_side'] ** 2} ({skipping}).")
    for mode in result["modes"].values():
        if mode["mode"].startswith("fast") and cfg.get("fast_fallback", True):
            lines.append(f"{mode['label']}: exact mode's grid answered {mode['fallback_runs']} of "
                         f"{mode['stages']['total']['n']} runs ({_MAP_PROMPTS[cfg.get('fast_map', 'tokens')]} "
                         "found nothing that passed; the grid stops at its first coarse-to-fine stage that answers).")
        elif mode["mode"].startswith("fast"):
            lines.append(f"{mode['label']}: no fallback (--no-fast-fallback): the map's prompts alone.")
    if cfg["random_weights"]:
        lines.append("[RANDOM WEIGHTS]: these figures are the compute-only worst case, not a workload.")
    lines.append("frames: " + "; ".join(f"{f['label']} \"{f['command']}\"" for f in cfg["workload"]["frames"]))
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
    return f"{stages[name]['p50'] / 1000:.3f}" if name in stages else "-"


def _match_iou(result: dict) -> float:
    for mode in result["modes"].values():
        if mode["agreement"]:
            return mode["agreement"]["match_iou"]
    return 0.98
