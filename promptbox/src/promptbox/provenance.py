"""Where a checkpoint's weights came from, so results made with anything but the released models say so.

A checkpoint may carry a provenance file: `mobile_sam.pt.provenance.json` beside a MobileSAM file,
`promptbox_provenance.json` inside a CLIP directory. It names the weights' kind and the sha256 of the file it
describes; the kind is believed only while the hash matches, so a stale file can't tag (or untag) other weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SYNTHETIC_WORLD = "synthetic-world"
RANDOM = "random"
PROVENANCE_SUFFIX = ".provenance.json"
CLIP_PROVENANCE = "promptbox_provenance.json"
# What leads every text answer made with such weights.
TAGS = {RANDOM: "[RANDOM WEIGHTS]", SYNTHETIC_WORLD: "[SYNTHETIC-WORLD WEIGHTS]"}
KINDS = (SYNTHETIC_WORLD,)


class ProvenanceError(ValueError):
    """A provenance file that is unreadable, names an unknown kind, or does not match its weights file."""


def sam_provenance_path(checkpoint: str | Path) -> Path:
    return Path(f"{checkpoint}{PROVENANCE_SUFFIX}")


def clip_provenance_path(directory: str | Path) -> Path:
    return Path(directory) / CLIP_PROVENANCE


def read(provenance: Path, weights_file: Path) -> str | None:
    """The weights' kind from `provenance` (None when there is no such file), checked against `weights_file`."""
    if not provenance.is_file():
        return None
    try:
        record = json.loads(provenance.read_text())
        kind, expected = record["weights"], record["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ProvenanceError(
            f"{provenance}: could not be read ({type(error).__name__}: {error}); expected JSON with 'weights' and "
            "'sha256'. Delete it if these are the released weights."
        ) from error
    if kind not in KINDS:
        raise ProvenanceError(f"{provenance}: weights={kind!r} is not a known kind; accepted: {', '.join(KINDS)}")
    actual = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    if actual != expected:
        raise ProvenanceError(
            f"{provenance} describes a file with sha256 {expected}, but {weights_file} has {actual}: "
            "the provenance file is stale. Rewrite it with the weights, or delete it."
        )
    return kind


def tag(kinds: set[str | None]) -> str:
    """The tag for a model set: random weights outrank synthetic-world ones; released weights have none."""
    for kind in (RANDOM, SYNTHETIC_WORLD):
        if kind in kinds:
            return TAGS[kind]
    return ""
