"""Settings of a Locator. Defaults are the seed script's, so behaviour changes only when asked."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

MODES = ("exact", "fast", "upstream")
DEVICES = ("cpu", "cuda")
# onnx: MobileSAM's encoder and mask decoder and CLIP's text and image towers in ONNX Runtime; onnx-int8: the same
# with the decoder and CLIP towers int8-quantised (onnx_runtime.py).
ENCODER_BACKENDS = ("torch", "onnx", "onnx-int8")
MATCHING = ("shortlist", "crops")
FAST_MAPS = ("auto", "tokens", "windows", "both")  # fast mode's similarity map (window_map.py, fast_map_on)


@dataclass(frozen=True)
class AmgSettings:
    """SamAutomaticMaskGenerator's parameters; the defaults are the seed script's. `skip_covered_points` is
    promptbox's own (upstream has no such step)."""

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.85
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 200
    # Exact mode decodes the grid coarse to fine and skips a point that lies inside the finest mask an earlier
    # point already produced: on a table most points land on surfaces and objects already segmented, and each
    # would only repeat their masks into NMS. False decodes every grid point, as upstream does.
    skip_covered_points: bool = True


@dataclass(frozen=True)
class LocatorConfig:
    sam_checkpoint: str | None = None  # path to mobile_sam.pt; None: resolve (see weight_locations.py)
    clip_model: str = "tinyclip-61m"  # a name from weight_locations.CLIP_MODELS, an HF id, or a local HF directory
    device: str = "cpu"
    mode: str = "exact"  # exact: AMG's masks with less work; fast: text-guided prompts; upstream: the seed's AMG
    amg: AmgSettings = field(default_factory=AmgSettings)
    min_score: float = 0.5  # calibrated confidence (share against competing names) below which: NotFound
    top_k: int = 5
    part_margin: float = 0.02  # a containing mask beats its part if its similarity is within this of the part's
    fast_points: int = 6  # fast mode: point prompts at the peaks of the phrase's similarity (against scenery), per map
    # Fast mode's similarity map: "tokens" (CLIP's patch tokens, one pass per frame), "windows" (square crops
    # `map_window` of the frame's longest side wide, half a window apart, one image-tower pass each per frame: see
    # window_map.py for what it costs and gains), "both" (each map's fast_points peaks), or "auto" (fast_map_on).
    fast_map: str = "auto"
    map_window: float = 0.2
    # Fast mode answers from its prompts when one of their regions passes min_score; otherwise it goes on with exact
    # mode's grid on the same frame (decoded once per frame), so a target the similarity map missed is still
    # found. False: its prompts' answer stands, "not found" included. A command that compares instances (a spatial
    # qualifier, a relation, a part) is matched on exact mode's masks either way, a spatial word's or a relation's
    # with its prompts' new masks beside them (Locator._propose).
    fast_fallback: bool = True
    # crops: every proposal gets its own masked CLIP crop. shortlist: mask-pooled patch tokens of one CLIP pass rank
    # them, and only the `shortlist_size` best per phrase (and the regions containing those) get crops.
    matching: str = "shortlist"
    shortlist_size: int = 8
    # torch, or ONNX Runtime ("onnx") for MobileSAM's encoder and mask decoder and CLIP's text and image towers (the
    # CLIP patch-token pass stays torch); the name predates the decoder and CLIP towers joining it.
    encoder_backend: str = "torch"
    allow_random_weights: bool = False
    threads: int | None = None  # torch intra-op threads; None: torch's default

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("encoder_backend", self.encoder_backend, ENCODER_BACKENDS)
        _check_choice("matching", self.matching, MATCHING)
        _check_choice("fast_map", self.fast_map, FAST_MAPS)
        check_map_window(self.map_window)
        if self.shortlist_size < 1:
            raise ValueError(f"shortlist_size={self.shortlist_size!r} must be at least 1")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(f"device={self.device!r} is not supported; use one of {', '.join(DEVICES)} or 'cuda:N'")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score={self.min_score!r} is out of range; accepted: 0.0 to 1.0")
        if self.top_k < 1:
            raise ValueError(f"top_k={self.top_k!r} must be at least 1")
        if self.amg.points_per_side < 1:
            raise ValueError(f"amg.points_per_side={self.amg.points_per_side!r} must be at least 1")

    @property
    def resolved_fast_map(self) -> str:
        """The map fast mode uses on this config's device ("auto" resolved)."""
        return fast_map_on(self.fast_map, self.device)

    @property
    def fast_maps(self) -> tuple[str, ...]:
        """The maps whose peaks fast mode prompts at on this config's device: "tokens", "windows", or both."""
        resolved = self.resolved_fast_map
        return ("tokens", "windows") if resolved == "both" else (resolved,)

    def with_overrides(self, **overrides: Any) -> LocatorConfig:
        """A copy with top-level or `amg_<name>` fields replaced; unknown names are an error."""
        amg_names = {f.name for f in fields(AmgSettings)}
        top_names = {f.name for f in fields(LocatorConfig)}
        amg_changes, top_changes = {}, {}
        for key, value in overrides.items():
            if key.startswith("amg_") and key[4:] in amg_names:
                amg_changes[key[4:]] = value
            elif key in top_names:
                top_changes[key] = value
            else:
                raise ValueError(f"unknown setting {key!r}; accepted: {', '.join(sorted(top_names))}, amg_<name>")
        if amg_changes:
            top_changes["amg"] = replace(top_changes.get("amg", self.amg), **amg_changes)
        return replace(self, **top_changes)


def fast_map_on(fast_map: str, device: str) -> str:
    """`fast_map` with "auto" resolved for `device`: "both" on a GPU, where the windows cost a few batches once per
    frame and fast mode falls back to the grid less often; "tokens" on a CPU, where a real TinyCLIP's windows would
    cost seconds per frame (window_map.py)."""
    if fast_map != "auto":
        return fast_map
    return "both" if device.startswith("cuda") else "tokens"


def check_map_window(share: float) -> float:
    """A window's side as a share of the frame's longest side (LocatorConfig.map_window, window_map.window_grid)."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"map_window={share!r} is out of range; accepted: above 0 and at most 1")
    return share


def _check_choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not supported; accepted: {', '.join(accepted)}")
