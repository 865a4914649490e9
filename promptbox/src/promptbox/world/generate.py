"""Write world scenes and their queries as an evaluation folder that `promptbox eval` reads.

    OUT/images/scene_0000.png      RGB frames
    OUT/masks/scene_0000_q00.png   mono8 truth masks (255 = object), for queries with exactly one answer
    OUT/labels.jsonl               one query per line, paths relative to OUT
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from promptbox.world.commands import WorldQuery, queries_for
from promptbox.world.scene import generate_scene

LABELS_FILE = "labels.jsonl"
WORLD_FILE = "world.json"
_QUERY_STREAM = 7  # keeps the query rng apart from the scene rng of the same (seed, index)


def write_dataset(out: Path, scenes: int, seed: int, size: tuple[int, int] = (640, 480), *,
                  split: str = "val") -> Path:
    """Write `scenes` scenes of stream `seed` under `out` and return `out`. The same arguments give the same bytes."""
    if scenes < 1:
        raise ValueError(f"scenes={scenes!r} must be at least 1")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    with (out / LABELS_FILE).open("w", encoding="utf-8", newline="\n") as labels:
        for record in _records(out, scenes, seed, size, split):
            labels.write(json.dumps(record) + "\n")
    # How the folder was drawn, so a tool can redraw any scene (e.g. `promptbox eval --world-masks`).
    stream = {"seed": seed, "scenes": scenes, "size": list(size), "split": split}
    (out / WORLD_FILE).write_text(json.dumps(stream) + "\n", encoding="utf-8")
    return out


def _records(out: Path, scenes: int, seed: int, size: tuple[int, int], split: str) -> Iterator[dict]:
    for index in range(scenes):
        scene = generate_scene(seed, index, size, split=split)
        image = f"images/scene_{index:04d}.png"
        _write_png(out / image, cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        rng = np.random.default_rng([seed, index, _QUERY_STREAM])
        for number, query in enumerate(queries_for(scene, rng)):
            mask = None
            if query.truth_mask is not None:
                mask = f"masks/scene_{index:04d}_q{number:02d}.png"
                _write_png(out / mask, query.truth_mask.astype(np.uint8) * 255)
            yield _record(image, query, mask, index)


def _record(image: str, query: WorldQuery, mask: str | None, scene: int) -> dict:
    record: dict = {
        "image": image,
        "command": query.command,
        "boxes": [list(b) for b in query.boxes],
        "tags": list(query.tags),
        "objects": [list(b) for b in query.objects],
    }
    if mask is not None:
        record["mask"] = mask
    record["scene"] = scene
    return record


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")
