"""Where the model checkpoints are: their names, the weights directory, and the resolution order that every
loader and `promptbox weights check` walk.

First hit wins:
  1. an explicit path: a `mobile_sam.pt` file (or a directory holding one); for CLIP a local Hugging Face
     directory (config.json + model.safetensors or pytorch_model.bin + tokenizer files). An explicit path
     that is missing is reported as missing; nothing else is searched for it.
  2. the weights directory: `$PROMPTBOX_WEIGHTS_DIR`, or `~/.cache/promptbox` when that is unset. Layout:
         mobile_sam.pt
         wkcn--TinyCLIP-ViT-61M-32-Text-29M-LAION400M/    <- the HF id with "/" replaced by "--"
                                                             (what `promptbox weights fetch` writes)
         tinyclip-61m/                                     <- the short name from CLIP_MODELS, also accepted
  3. the Hugging Face cache (`try_to_load_from_cache` / `snapshot_download(local_files_only=True)`);
     MobileSAM is looked up there as `dhkim2810/MobileSAM` / `mobile_sam.pt`.
Nothing here downloads or loads; weights.py loads what this finds, downloads.py fetches what it does not.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from promptbox.errors import WeightsError

WEIGHTS_DIR_ENV = "PROMPTBOX_WEIGHTS_DIR"
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

SAM_NAME = "mobile_sam"
SAM_FILENAME = "mobile_sam.pt"
SAM_HF_REPO = "dhkim2810/MobileSAM"  # a Hub mirror of the same file, for the HF cache lookup

CLIP_MODELS: dict[str, str] = {
    "tinyclip-61m": "wkcn/TinyCLIP-ViT-61M-32-Text-29M-LAION400M",
    "tinyclip-8m": "wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M",
    "clip-b32": "openai/clip-vit-base-patch32",
}
DEFAULT_CLIP = "tinyclip-61m"

_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
WEIGHT_FILES = (
    "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json"
)


def weights_dir() -> Path:
    """$PROMPTBOX_WEIGHTS_DIR, or ~/.cache/promptbox (XDG_CACHE_HOME honoured) when it is unset."""
    configured = os.environ.get(WEIGHTS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "promptbox"


def weights_dir_label() -> str:
    """How the weights directory was chosen, for the "looked in" lists."""
    if os.environ.get(WEIGHTS_DIR_ENV):
        return f"${WEIGHTS_DIR_ENV}"
    return f"default weights dir; ${WEIGHTS_DIR_ENV} unset"


def offline_reason() -> str | None:
    """Which offline flag is set, or None when downloads are allowed."""
    for name in OFFLINE_ENVS:
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{name}={os.environ[name]}"
    return None


def find_sam(checkpoint: str | os.PathLike | None = None) -> tuple[Path | None, list[str]]:
    """The MobileSAM checkpoint file (or None) and the places looked at, in resolution order."""
    looked: list[str] = []
    if checkpoint:  # None or "": not given
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            path = path / SAM_FILENAME
        looked.append(f"{path} (explicit path)")
        return (path if path.is_file() else None), looked
    path = weights_dir() / SAM_FILENAME
    looked.append(f"{path} ({weights_dir_label()})")
    if path.is_file():
        return path, looked
    from huggingface_hub import constants, try_to_load_from_cache

    looked.append(f"Hugging Face cache {constants.HF_HUB_CACHE}: {SAM_HF_REPO}/{SAM_FILENAME}")
    cached = try_to_load_from_cache(SAM_HF_REPO, SAM_FILENAME)
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached), looked
    return None, looked


@dataclass(frozen=True)
class ClipTarget:
    """What a CLIP `name_or_path` means: an explicit directory, or a (short name, Hub id) pair."""

    directory: Path | None
    name: str | None
    hf_id: str | None

    @property
    def label(self) -> str:
        if self.directory is not None:
            return str(self.directory)
        return f"{self.name} ({self.hf_id})" if self.name else str(self.hf_id)


def clip_target(name_or_path: str | os.PathLike) -> ClipTarget:
    """What a CLIP name, Hub id or path means; a WeightsError for text that is none of them."""
    text = os.fspath(name_or_path)
    if text in CLIP_MODELS:
        return ClipTarget(None, text, CLIP_MODELS[text])
    by_id = {hf_id: name for name, hf_id in CLIP_MODELS.items()}
    if text in by_id:
        return ClipTarget(None, by_id[text], text)
    path = Path(text).expanduser()
    looks_like_path = text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
    if path.exists() or looks_like_path:
        return ClipTarget(path, None, None)
    if _HF_ID.fullmatch(text):
        return ClipTarget(None, None, text)
    raise WeightsError(
        f"CLIP model {text!r} is neither a known name ({', '.join(CLIP_MODELS)}), a Hugging Face id (org/name), "
        "nor an existing local directory"
    )


def resolve_clip_id(name_or_id: str) -> str:
    """The Hugging Face id of a short name from CLIP_MODELS (an id is returned as is)."""
    target = clip_target(name_or_id)
    if target.hf_id is None:
        raise WeightsError(f"{name_or_id!r} is a local path, not a CLIP model name or Hugging Face id")
    return target.hf_id


def clip_dir_problem(directory: Path) -> str | None:
    """Why `directory` is not a loadable HF CLIP directory, or None when it looks complete."""
    if not directory.is_dir():
        return "not found"
    if not (directory / "config.json").is_file():
        return "exists but has no config.json"
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        return f"exists but has no weights ({' / '.join(WEIGHT_FILES[:2])})"
    return None


def find_clip(name_or_path: str | os.PathLike = DEFAULT_CLIP) -> tuple[Path | None, list[str]]:
    """The local HF directory of a CLIP model (or None) and the places looked at, in resolution order."""
    return find_clip_target(clip_target(name_or_path))


def find_clip_target(target: ClipTarget) -> tuple[Path | None, list[str]]:
    """find_clip for an already resolved target."""
    looked: list[str] = []

    def accept(directory: Path, label: str) -> bool:
        problem = clip_dir_problem(directory)
        looked.append(f"{directory} ({label})" + (f": {problem}" if problem and problem != "not found" else ""))
        return problem is None

    if target.directory is not None:
        return (target.directory if accept(target.directory, "explicit directory") else None), looked
    assert target.hf_id is not None
    root = weights_dir()
    candidates = ([root / target.name] if target.name else []) + [root / hub_dirname(target.hf_id)]
    for directory in candidates:
        if accept(directory, weights_dir_label()):
            return directory, looked

    from huggingface_hub import constants, snapshot_download

    label = f"Hugging Face cache {constants.HF_HUB_CACHE}: {target.hf_id}"
    try:
        snapshot = Path(snapshot_download(target.hf_id, local_files_only=True))
    except Exception as error:  # LocalEntryNotFoundError and friends: not cached
        looked.append(f"{label} (not cached: {type(error).__name__})")
        return None, looked
    problem = clip_dir_problem(snapshot)
    looked.append(label + (f" ({snapshot}: {problem})" if problem else ""))
    return (snapshot if problem is None else None), looked


def hub_dirname(hf_id: str) -> str:
    """The weights directory's folder name for a Hub id ("org/name" -> "org--name")."""
    return hf_id.replace("/", "--")
