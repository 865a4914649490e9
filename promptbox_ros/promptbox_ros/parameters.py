"""locate_node's parameters: names, defaults, descriptions and accepted ranges, and the check made at configure.

A value outside its range stops the configure transition with a message naming the parameter, the value and what
is accepted, so a bad file fails at start-up instead of aborting every goal later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from promptbox.config import ENCODER_BACKENDS, FAST_MAPS, AmgSettings, LocatorConfig
from promptbox.depth import DepthSettings

GOAL_POLICIES = ("queue", "preempt")
IMAGE_TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class Spec:
    default: object  # its type is the parameter's type
    description: str
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    choices: tuple[str, ...] = ()


_CORE = LocatorConfig()
_AMG = AmgSettings()
_DEPTH = DepthSettings()
_UNIT = (0.0, 1.0)  # probabilities, IoUs, scores

PARAMETERS: dict[str, Spec] = {
    "sam_checkpoint": Spec("", "path to mobile_sam.pt; empty: $PROMPTBOX_WEIGHTS_DIR, then the Hugging Face cache"),
    "clip_model": Spec(_CORE.clip_model, "CLIP model: tinyclip-61m, tinyclip-8m, clip-b32, a Hugging Face id or a dir"),
    "device": Spec(_CORE.device, "torch device: cpu, cuda or cuda:N"),
    "encoder_backend": Spec(_CORE.encoder_backend,
                            "torch, onnx (ONNX Runtime: MobileSAM encoder and decoder, CLIP text and image towers) "
                            "or onnx-int8 (the same, matrix products quantised)", choices=ENCODER_BACKENDS),
    "threads": Spec(0, "torch intra-op threads; 0: torch's default", 0, 1024),
    "allow_random_weights": Spec(False, "run on random-init models when checkpoints are missing (plumbing tests only)"),
    "mode": Spec(_CORE.mode, "exact: the AMG mask set with less work; fast: text-guided point prompts; upstream",
                 choices=("exact", "fast", "upstream")),
    "fast_points": Spec(_CORE.fast_points, "fast mode: point prompts placed at text-similarity peaks, per map", 1,
                        256),
    "fast_map": Spec(_CORE.fast_map, "fast mode's similarity map: tokens (CLIP's patch tokens), windows (square "
                     "CLIP crops over the frame, once per frame), both, or auto: both on a GPU, tokens on a CPU",
                     choices=FAST_MAPS),
    "map_window": Spec(_CORE.map_window, "fast_map windows or both: a window's side as a share of the frame's "
                       "longest side", 0.01, 1.0),
    "fast_fallback": Spec(_CORE.fast_fallback, "fast mode: when nothing its prompts propose passes min_score, go on "
                          "with exact mode's grid, coarse to fine, until a stage answers; false: their answer stands "
                          "(a spatial qualifier or a relation uses exact mode's masks either way)"),
    "min_score": Spec(_CORE.min_score, "calibrated confidence below which the answer is not found (goal.min_score 0)",
                      *_UNIT),
    "top_k": Spec(_CORE.top_k, "alternatives published on `candidates` besides the chosen object", 1, 100),
    "part_margin": Spec(_CORE.part_margin, "a whole object beats its part when its similarity is within this margin",
                        0.0, 1.0),
    "matching": Spec(_CORE.matching, "shortlist: mask-pooled CLIP tokens rank the proposals, only the best get crops; "
                     "crops: a CLIP crop for every proposal", choices=("shortlist", "crops")),
    "shortlist_size": Spec(_CORE.shortlist_size, "matching shortlist: regions re-scored with crops per phrase", 1, 256),
    "amg.points_per_side": Spec(_AMG.points_per_side, "automatic mask generator (mode exact): prompt grid per side",
                                1, 64),
    "amg.points_per_batch": Spec(_AMG.points_per_batch, "prompts decoded per batch", 1, 4096),
    "amg.pred_iou_thresh": Spec(_AMG.pred_iou_thresh, "drop masks whose predicted IoU is below this", *_UNIT),
    "amg.stability_score_thresh": Spec(_AMG.stability_score_thresh, "drop masks whose stability score is below this",
                                       *_UNIT),
    "amg.stability_score_offset": Spec(_AMG.stability_score_offset, "logit offset of the stability score", 0.0, 100.0),
    "amg.box_nms_thresh": Spec(_AMG.box_nms_thresh, "box IoU above which overlapping masks are suppressed",
                               *_UNIT),
    "amg.crop_n_layers": Spec(_AMG.crop_n_layers, "extra crop layers; 0: the whole image only", 0, 4),
    "amg.crop_nms_thresh": Spec(_AMG.crop_nms_thresh, "box NMS between crops", *_UNIT),
    "amg.crop_overlap_ratio": Spec(_AMG.crop_overlap_ratio, "overlap of neighbouring crops", 0.0, 0.99),
    "amg.crop_n_points_downscale_factor": Spec(_AMG.crop_n_points_downscale_factor,
                                               "prompt grid reduction per crop layer", 1, 16),
    "amg.min_mask_region_area": Spec(_AMG.min_mask_region_area, "remove islands and holes smaller than this (pixels)",
                                     0, 10**7),
    "amg.skip_covered_points": Spec(_AMG.skip_covered_points, "mode exact: decode the grid coarse to fine and skip "
                                    "points inside a segment already found; false: every point, as upstream"),
    "goal_policy": Spec("queue", "queue: a new goal waits for the running one; preempt: it aborts the running one",
                        choices=GOAL_POLICIES),
    "image_transport": Spec("raw", "raw: subscribe to `image`; compressed: to `<resolved image topic>/compressed`",
                            choices=IMAGE_TRANSPORTS),
    "image_timeout_s": Spec(2.0, "seconds a goal waits for a usable camera frame, once the models are free, "
                            "before it aborts", 0.01, 3600.0),
    "max_image_age_s": Spec(2.0, "a frame that arrived longer ago than this is not used; 0: no limit", 0.0, 86400.0),
    "precompute_embedding": Spec(False, "embed each new frame while idle so a goal on that frame skips the encoder"),
    "publish_debug_image": Spec(True, "draw and publish debug_image (only while it has subscribers)"),
    "warmup": Spec(True, "run each model once at configure so the first goal is not the slow one"),
    "autostart": Spec(True, "configure and activate at start-up; false: wait for a lifecycle manager"),
    # The 3D target from an aligned depth image (promptbox.depth); the DepthSettings fields keep their names.
    "depth.enabled": Spec(True, "subscribe to depth/image and camera_info, and answer with a 3D pose when they match"),
    "depth.rectified": Spec(False, "the images are rectified: use camera_info's P; false: K and D (raw images)"),
    "depth.slop_s": Spec(0.05, "largest stamp difference for colour/depth and depth/camera_info pairs (seconds)",
                         0.0, 10.0),
    "depth.wait_s": Spec(0.5, "how long a found answer waits for a depth image (camera_info) within depth.slop_s "
                         "that has not arrived yet while none newer has either (seconds)", 0.0, 10.0),
    "depth.min_range_m": Spec(_DEPTH.min_range_m, "depth nearer than this is ignored (metres)", 0.0, 1000.0),
    "depth.max_range_m": Spec(_DEPTH.max_range_m, "depth farther than this is ignored (metres)", 0.0, 1000.0),
    "depth.min_valid_fraction": Spec(_DEPTH.min_valid_fraction,
                                     "share of the mask's pixels that must have valid depth for a pose", *_UNIT),
    "depth.extent_percentiles": Spec(list(_DEPTH.extent_percentiles),
                                     "[low, high] percentiles of the mask's 3D points that span the size"),
    "depth.outlier_mads": Spec(_DEPTH.outlier_mads, "pixels beyond this many MADs from the median depth are left "
                               "out of x, y and the size", 0.0, 1000.0),
    "depth.depth_band_m": Spec(_DEPTH.depth_band_m, "...but never those within this many metres of it", 0.0, 10.0),
}


def check(values: dict[str, object]) -> None:
    """Raise ValueError naming the first parameter outside its accepted values."""
    for name, spec in PARAMETERS.items():
        value = values[name]
        if spec.choices and value not in spec.choices:
            raise ValueError(f"parameter {name}={value!r} is not supported; accepted: {', '.join(spec.choices)}")
        if spec.low is None or isinstance(value, bool):
            continue
        if not (math.isfinite(value) and spec.low <= value <= spec.high):
            kind = "an integer" if isinstance(spec.default, int) else "a number"
            raise ValueError(f"parameter {name}={value!r} is out of range; accepted: {kind} from {spec.low:g} "
                             f"to {spec.high:g}")


def depth_settings(values: dict[str, object]) -> DepthSettings:
    """The core's depth settings from parameter values; a bad combination (max below min) names the parameter."""
    low_high = list(values["depth.extent_percentiles"])
    if len(low_high) != 2:
        raise ValueError(f"parameter depth.extent_percentiles={low_high!r} is not supported; accepted: [low, high], "
                         "two numbers with 0 <= low < high <= 100")
    given = {f.name: values[f"depth.{f.name}"] for f in fields(DepthSettings) if f.name != "extent_percentiles"}
    try:
        return DepthSettings(**given, extent_percentiles=(float(low_high[0]), float(low_high[1])))
    except ValueError as error:
        raise ValueError(f"parameter depth.{error}") from None  # the core's text starts with the field's name


def locator_config(values: dict[str, object]) -> LocatorConfig:
    """The core's settings from checked parameter values."""
    amg = AmgSettings(**{f.name: values[f"amg.{f.name}"] for f in fields(AmgSettings)})
    return LocatorConfig(
        sam_checkpoint=str(values["sam_checkpoint"]) or None,
        clip_model=str(values["clip_model"]),
        device=str(values["device"]),
        mode=str(values["mode"]),
        amg=amg,
        min_score=float(values["min_score"]),
        top_k=int(values["top_k"]),
        part_margin=float(values["part_margin"]),
        fast_points=int(values["fast_points"]),
        fast_fallback=bool(values["fast_fallback"]),
        fast_map=str(values["fast_map"]),
        map_window=float(values["map_window"]),
        matching=str(values["matching"]),
        shortlist_size=int(values["shortlist_size"]),
        encoder_backend=str(values["encoder_backend"]),
        allow_random_weights=bool(values["allow_random_weights"]),
        threads=int(values["threads"]) or None,
    )
