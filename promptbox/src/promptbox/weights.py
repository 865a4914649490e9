"""Model weights: how the MobileSAM and CLIP checkpoints that weight_locations.py finds are checked and loaded.

Loading (`load_sam`, `load_clip`) downloads a missing released checkpoint into the weights directory
(downloads.py) only when no offline flag (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) is set, `allow_random` is False
and the network answers within a few seconds. MobileSAM comes from `$PROMPTBOX_SAM_URL` (default: the official
MobileSAM repository), CLIP through `snapshot_download`.

Checks: a MobileSAM state_dict must have exactly the keys and shapes of mobile_sam's vit_t model, and its sha256
must match `$PROMPTBOX_SAM_SHA256` (or the `sha256` argument) when one is configured. A CLIP directory must hold
a CLIP config (model_type "clip"), weights that cover every parameter, and a full tokenizer.

Random weights exist only for plumbing checks (`allow_random=True` and the real ones missing; the returned bool
says so). They go through the same code as real checkpoints: `random_sam_state_dict` feeds the same state_dict
check and load, `random_clip` builds the model from the named model's real dimensions (CLIP_DIMS). Those live in
stand_ins.py, CLIP's offline tokenizer in clip_tokenizer.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from promptbox import provenance
from promptbox.errors import WeightsError
from promptbox.weight_locations import (
    CLIP_MODELS,
    DEFAULT_CLIP,
    SAM_FILENAME,
    SAM_NAME,
    WEIGHT_FILES,
    clip_target,
    find_clip,
    find_clip_target,
    find_sam,
)

if TYPE_CHECKING:
    from mobile_sam.modeling import Sam

SAM_URL_ENV = "PROMPTBOX_SAM_URL"
SAM_SHA256_ENV = "PROMPTBOX_SAM_SHA256"

DEFAULT_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
# sha256 of the official mobile_sam.pt (as published alongside its mirrors); checked when fetching from the default URL.
OFFICIAL_SAM_SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"

RANDOM_SEED = 0


@dataclass(frozen=True)
class ClipDims:
    """A CLIP model's real architecture (the MLPs are 4x wide in all of them)."""

    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    projection_dim: int
    hidden_act: str

    def config(self) -> CLIPConfig:
        return CLIPConfig(
            vision_config={
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "hidden_size": self.vision_width,
                "num_hidden_layers": self.vision_layers,
                "num_attention_heads": self.vision_heads,
                "intermediate_size": 4 * self.vision_width,
                "hidden_act": self.hidden_act,
            },
            text_config={
                "hidden_size": self.text_width,
                "num_hidden_layers": self.text_layers,
                "num_attention_heads": self.text_heads,
                "intermediate_size": 4 * self.text_width,
                "max_position_embeddings": 77,
                "vocab_size": 49408,
                "hidden_act": self.hidden_act,
            },
            projection_dim=self.projection_dim,
        )


# Sources: TinyCLIP's open_clip model configs (microsoft/Cream, TinyCLIP/src/open_clip/model_configs; head width 64,
# GELU) and openai/clip-vit-base-patch32's config.json. Vision towers: 61.4 M, 8.3 M and 87.8 M parameters.
CLIP_DIMS: dict[str, ClipDims] = {
    #                        image patch  vision: width layers heads  text: width layers heads  proj  activation
    "tinyclip-61m": ClipDims(224,  32,            640,  12,    10,          512,  9,     8,     512,  "gelu"),
    "tinyclip-8m":  ClipDims(224,  16,            256,  10,    4,           256,  3,     4,     512,  "gelu"),
    "clip-b32":     ClipDims(224,  32,            768,  12,    12,          512,  12,    8,     512,  "quick_gelu"),
}

_FIX = (
    "Fix: set PROMPTBOX_WEIGHTS_DIR to a directory holding the weights (layout in promptbox/weight_locations.py), "
    "run `promptbox weights fetch` on a networked machine and copy that directory over, "
    "or use --random-weights / allow_random_weights=True for plumbing checks only (the results are meaningless)."
)


@dataclass(frozen=True)
class WeightRecord:
    """One line of `promptbox weights check`."""

    name: str
    found: bool
    where: str | None
    detail: str


# --- MobileSAM --------------------------------------------------------------------------------------------------


def load_sam(
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    allow_random: bool = False,
    *,
    sha256: str | None = None,
    download: bool = True,
) -> tuple[Sam, bool]:
    """MobileSAM (vit_t) in eval mode on `device`, and whether its weights are random (see the module docstring)."""
    path, looked = find_sam(checkpoint)
    if path is None and not checkpoint and download and not allow_random:
        from promptbox.downloads import download_sam_into_weights_dir

        path = download_sam_into_weights_dir(looked)
    if path is None:
        if not allow_random:
            raise WeightsError(
                f"MobileSAM checkpoint {Path(checkpoint or SAM_FILENAME).name!r} not found. Looked in:\n  - "
                + "\n  - ".join(looked)
                + f"\n{_FIX}"
            )
        from promptbox.stand_ins import random_sam_state_dict

        state_dict, source, is_random = random_sam_state_dict(), f"random init (seed {RANDOM_SEED})", True
    else:
        _check_sha256(path, sha256 or os.environ.get(SAM_SHA256_ENV))
        _provenance(provenance.sam_provenance_path(path), path)  # a stale provenance file is an error
        state_dict, source, is_random = _read_sam_state_dict(path), str(path), False
    model = sam_from_state_dict(state_dict, source)
    return model.to(device).eval(), is_random


def _new_vit_t() -> Sam:
    from mobile_sam import sam_model_registry

    return sam_model_registry["vit_t"]()


def _read_sam_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        # weights_only: a checkpoint is data; never run a pickle's code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"{path} could not be read as a MobileSAM checkpoint ({type(error).__name__}: {error}). "
            f"Expected the torch.save'd state_dict of the official {SAM_FILENAME}; the file may be truncated.\n{_FIX}"
        ) from error


def sam_from_state_dict(state_dict: Mapping[str, torch.Tensor], source: str) -> Sam:
    """A vit_t MobileSAM holding `state_dict`, which must match the model's keys and shapes exactly."""
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise WeightsError(
            f"{source} is not a MobileSAM state_dict (got {type(state_dict).__name__}); "
            f"expected a mapping of parameter names to tensors, as in the official {SAM_FILENAME}"
        )
    model = _new_vit_t()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = [
        f"{label}: {_few(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", mismatched))
        if keys
    ]
    if problems:
        raise WeightsError(
            f"{source} does not match MobileSAM vit_t: " + "; ".join(problems)
            + f". Is it the vit_t {SAM_FILENAME} (not a SAM vit_b/l/h or a MobileSAMv2 checkpoint)?"
        )
    model.load_state_dict(state_dict, strict=True)
    return model


def _few(items: list[str], shown: int = 4) -> str:
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str | None) -> None:
    if not expected:
        return
    actual = _file_sha256(path)
    if actual != expected.strip().lower():
        raise WeightsError(
            f"{path}: sha256 {actual} does not match the configured {expected.strip()} "
            f"(${SAM_SHA256_ENV} or the sha256 argument). The file is corrupt or a different checkpoint: "
            "delete it and run `promptbox weights fetch` again, or correct the configured hash."
        )


# --- CLIP -------------------------------------------------------------------------------------------------------


def load_clip(
    name_or_path: str | os.PathLike = DEFAULT_CLIP,
    device: str = "cpu",
    allow_random: bool = False,
    *,
    download: bool = True,
) -> tuple[CLIPModel, CLIPTokenizer, bool]:
    """A CLIPModel in eval mode on `device`, its tokenizer, and whether the weights are random."""
    target = clip_target(name_or_path)
    directory, looked = find_clip_target(target)
    if directory is None and target.hf_id is not None and download and not allow_random:
        from promptbox.downloads import download_clip_into_weights_dir

        directory = download_clip_into_weights_dir(target, looked)
    if directory is None:
        if not allow_random:
            raise WeightsError(
                f"CLIP model {target.label} not found. Looked in:\n  - " + "\n  - ".join(looked) + f"\n{_FIX}"
            )
        if target.name is None:
            raise WeightsError(
                f"CLIP model {target.label} not found, and random stand-in weights exist only for the known "
                f"names ({', '.join(CLIP_MODELS)}), whose dimensions are known. Looked in:\n  - "
                + "\n  - ".join(looked)
            )
        from promptbox.stand_ins import random_clip

        model, tokenizer = random_clip(target.name)
        return _ready(model, device), tokenizer, True
    model, tokenizer = read_clip_dir(directory)
    _clip_provenance(directory)
    return _ready(model, device), tokenizer, False


def sam_kind(checkpoint: str | os.PathLike | None = None) -> str | None:
    """The provenance kind of the MobileSAM checkpoint `load_sam` would load (e.g. 'synthetic-world'), or None
    for released weights and when there is none (random stand-ins are reported by `load_sam` itself)."""
    path, _ = find_sam(checkpoint)
    return None if path is None else _provenance(provenance.sam_provenance_path(path), path)


def clip_kind(name_or_path: str | os.PathLike = DEFAULT_CLIP) -> str | None:
    """The provenance kind of the CLIP model `load_clip` would load, or None (see `sam_kind`)."""
    directory, _ = find_clip(name_or_path)
    return None if directory is None else _clip_provenance(directory)


def _clip_provenance(directory: Path) -> str | None:
    files = [directory / name for name in WEIGHT_FILES if (directory / name).is_file()]
    record = provenance.clip_provenance_path(directory)
    if not files:
        return None
    return _provenance(record, files[0])


def _provenance(record: Path, weights_file: Path) -> str | None:
    try:
        return provenance.read(record, weights_file)
    except provenance.ProvenanceError as error:
        raise WeightsError(str(error)) from error


def _ready(model: CLIPModel, device: str) -> CLIPModel:
    # float32: the CPU path has no fast half-precision kernels, and a Hub checkpoint may be stored in fp16.
    return model.float().to(device).eval().requires_grad_(False)


def read_clip_dir(directory: str | os.PathLike) -> tuple[CLIPModel, CLIPTokenizer]:
    """Model and tokenizer from a local Hugging Face CLIP directory, checked; any failure is a WeightsError."""
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{directory}: config.json could not be read ({error})") from error
    if config.get("model_type") != "clip":
        raise WeightsError(
            f"{directory}: config.json has model_type={config.get('model_type')!r}; promptbox needs a CLIP model "
            "(model_type 'clip', loaded with transformers.CLIPModel)"
        )
    absent = [name for name in ("vocab.json", "merges.txt") if not (directory / name).is_file()]
    if absent and not (directory / "tokenizer.json").is_file():
        # transformers' own message names neither file ("`vocab` and `merges` must be both be from memory ...").
        raise WeightsError(
            f"{directory}: the tokenizer is incomplete, {' and '.join(absent)} missing; a CLIP directory needs "
            "vocab.json and merges.txt (or tokenizer.json) beside config.json"
        )
    try:
        model, info = CLIPModel.from_pretrained(directory, output_loading_info=True, local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as error:
        raise WeightsError(f"CLIP model in {directory} could not be loaded: {type(error).__name__}: {error}") from error
    # transformers only warns about these and leaves the parameters random: that must not pass as a real model.
    missing, mismatched = sorted(info.get("missing_keys", ())), sorted(map(str, info.get("mismatched_keys", ())))
    if missing or mismatched:
        labelled = (("missing", missing), ("mismatched", mismatched))
        problems = [f"{label}: {_few(keys)}" for label, keys in labelled if keys]
        raise WeightsError(f"CLIP weights in {directory} do not match its config.json: " + "; ".join(problems))
    vocab_size = model.config.text_config.vocab_size
    if len(tokenizer) != vocab_size:
        raise WeightsError(
            f"{directory}: the tokenizer has {len(tokenizer)} tokens but the model expects {vocab_size}; "
            "the tokenizer files (tokenizer.json or vocab.json + merges.txt) are missing or wrong"
        )
    return model, tokenizer


# --- the CLI's check and fetch ----------------------------------------------------------------------------------


def _selection(names: Iterable[str] | None) -> list[str]:
    """SAM always (every mode needs it), then the named CLIP models: None -> the default one, "all" -> all."""
    clip_names: list[str] = []
    for name in names or [DEFAULT_CLIP]:
        picked = list(CLIP_MODELS) if name == "all" else [] if name == SAM_NAME else [name]
        clip_names += [n for n in picked if n not in clip_names]
    return [SAM_NAME, *clip_names]


def check(names: Iterable[str] | None = None) -> list[WeightRecord]:
    """Where each checkpoint would be loaded from; never downloads. `names`: CLIP names/ids/paths, "all",
    or None for the default CLIP model; mobile_sam is always checked."""
    records = []
    for name in _selection(names):
        if name == SAM_NAME:
            path, looked = find_sam()
            records.append(_record(name, path, looked))
            if path is not None and os.environ.get(SAM_SHA256_ENV):
                try:
                    _check_sha256(path, os.environ[SAM_SHA256_ENV])
                except WeightsError as error:
                    records[-1] = WeightRecord(name, False, str(path), str(error))
            continue
        try:
            directory, looked = find_clip(name)
        except WeightsError as error:
            records.append(WeightRecord(name, False, None, str(error)))
            continue
        records.append(_record(name, directory, looked))
    return records


def _record(name: str, found: Path | None, looked: list[str]) -> WeightRecord:
    if found is None:
        return WeightRecord(name, False, None, "looked in: " + "; ".join(looked))
    size = sum(p.stat().st_size for p in found.rglob("*") if p.is_file()) if found.is_dir() else found.stat().st_size
    return WeightRecord(name, True, str(found), f"{size / 1e6:.1f} MB")
