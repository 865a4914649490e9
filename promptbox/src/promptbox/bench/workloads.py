"""What the bench times: world scenes drawn from a fixed seed, or the images of a folder, each with its command;
and which weights it times them with."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEFAULT_COMMAND = "take the coffee cup"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
WORLD_SAM = Path("weights") / "world" / "mobile_sam.pt"
WORLD_CLIP = Path("weights") / "world" / "world-clip"
RANDOM_CLIP = "tinyclip-61m"  # the product's default CLIP, at its real dimensions


@dataclass(frozen=True)
class Frame:
    path: str
    command: str
    label: str  # for the report: the file name


@dataclass(frozen=True)
class Workload:
    label: str  # "world: 3 scenes, seed 20261124, 640x480" or "images: /data/x (5 images)"
    frames: tuple[Frame, ...]
    size: tuple[int, int] | None  # frames are resized to it when loaded; None: as they are

    def to_dict(self) -> dict:
        return {"label": self.label, "size": self.size, "frames": [asdict(f) for f in self.frames]}


def world_workload(scenes: int, seed: int, size: tuple[int, int] | None, command: str | None,
                   directory: str | None = None) -> Workload:
    """World scenes `seed` 0..scenes-1, drawn once into a cache folder and reused (the same arguments give the same
    bytes). Each frame gets its scene's first class query ("take the mug"), unless `command` is given."""
    from promptbox.world import write_dataset
    from promptbox.world.generate import WORLD_FILE

    size = size or (640, 480)
    folder = Path(directory) if directory else _world_cache() / f"seed{seed}-{scenes}x-{size[0]}x{size[1]}"
    stream = {"seed": seed, "scenes": scenes, "size": list(size), "split": "val"}
    marker = folder / WORLD_FILE
    if not (marker.is_file() and json.loads(marker.read_text()) == stream):
        write_dataset(folder, scenes, seed, size)
    frames = _labelled_frames(folder, command, prefer_tag="class")
    return Workload(f"world: {scenes} scenes, seed {seed}, {size[0]}x{size[1]} ({folder})", frames, None)


def images_workload(directory: str, size: tuple[int, int] | None, command: str | None) -> Workload:
    """Every image in `directory` (sorted by name). Commands: `command` for all; else labels.jsonl's first command
    per image (a promptbox eval folder); else DEFAULT_COMMAND."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(
            f"--images {directory!r}: not a folder; accepted: a folder of {'/'.join(IMAGE_SUFFIXES)} images"
        )
    if (folder / "labels.jsonl").is_file():
        frames = _labelled_frames(folder, command)
    else:
        paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        frames = tuple(Frame(str(p), command or DEFAULT_COMMAND, p.name) for p in paths)
    if not frames:
        raise ValueError(
            f"--images {directory!r}: no images in it; accepted: a folder of {'/'.join(IMAGE_SUFFIXES)} images"
        )
    for frame in frames:  # a bad file is named now, not minutes later in a worker
        load_frame(frame.path, (8, 8))
    return Workload(f"images: {folder} ({len(frames)} images)", frames, size)


def _labelled_frames(folder: Path, command: str | None, prefer_tag: str | None = None) -> tuple[Frame, ...]:
    """One frame per image of a labels.jsonl, in file order, with the first query (of `prefer_tag`, if any)."""
    chosen: dict[str, str] = {}
    preferred: set[str] = set()
    for number, line in enumerate((folder / "labels.jsonl").read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image, text, tags = record["image"], record["command"], record.get("tags", [])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{folder / 'labels.jsonl'} line {number}: {type(error).__name__}: {error}; accepted: JSON objects "
                "with 'image' and 'command' (promptbox eval format)"
            ) from None
        if image not in chosen or (prefer_tag in tags and image not in preferred):
            chosen[image] = text
            if prefer_tag in tags:
                preferred.add(image)
    return tuple(Frame(str(folder / image), command or text, Path(image).name) for image, text in chosen.items())


def load_frame(path: str, size: tuple[int, int] | None) -> np.ndarray:
    """RGB uint8, resized to `size` (W, H) when given."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"--images: {path!r} could not be read; accepted: png/jpg/bmp/tiff files")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        interpolation = cv2.INTER_AREA if size[0] < image.shape[1] else cv2.INTER_LINEAR
        image = cv2.resize(image, tuple(size), interpolation=interpolation)
    return np.ascontiguousarray(image)


def repo_root() -> Path | None:
    """The source checkout this promptbox runs from ($PROMPTBOX_ROOT, else found above this file), if any."""
    configured = os.environ.get("PROMPTBOX_ROOT")
    candidates = [Path(configured)] if configured else []
    candidates += list(Path(__file__).resolve().parents)
    for candidate in candidates:
        if (candidate / WORLD_SAM).is_file() and (candidate / WORLD_CLIP).is_dir():
            return candidate
    return None


def resolve_weights(sam_checkpoint: str | None, clip_model: str | None, random_weights: bool) -> tuple[str | None, str]:
    """(sam_checkpoint, clip_model) for the workers: the world weights unless named; None for SAM means random."""
    if random_weights:
        return None, clip_model or RANDOM_CLIP
    if sam_checkpoint and clip_model:
        return sam_checkpoint, clip_model
    root = repo_root()
    if root is None:
        raise ValueError(
            f"the world weights ({WORLD_SAM}, {WORLD_CLIP}) are not found above {Path(__file__).parent} nor under "
            "$PROMPTBOX_ROOT; accepted: run from the source checkout, or name --sam-checkpoint and --model, or "
            "--random-weights"
        )
    return sam_checkpoint or str(root / WORLD_SAM), clip_model or str(root / WORLD_CLIP)


def _world_cache() -> Path:
    root = repo_root()
    if root is not None and os.access(root, os.W_OK):
        return root / "build" / "bench-world"
    return Path(tempfile.gettempdir()) / "promptbox-bench-world"
