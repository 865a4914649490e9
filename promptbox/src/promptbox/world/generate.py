"""Write world scenes and their queries as an evaluation folder that `promptbox eval` reads.

    OUT/images/scene_0000.png      RGB frames
    OUT/masks/scene_0000_q00.png   mono8 truth masks (255 = object), for queries with exactly one answer
    OUT/depth/scene_0000.png       16UC1 depth in millimetres, aligned to the frame (world/depth.py's camera)
    OUT/camera_info.json           the camera's CameraInfo (ROS 2 field names), one for every frame
    OUT/labels.jsonl               one query per line, paths relative to OUT

Each record also names its `depth` and `camera_info`, and `centroids_3d`: per acceptable box, the 3D centre of that
object's visible top in metres in the camera optical frame, so `promptbox eval` can report the 3D error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from promptbox.camera import Intrinsics
from promptbox.world.commands import WorldQuery, queries_for
from promptbox.world.depth import scene_depth_mm, surface_centroid, world_intrinsics
from promptbox.world.scene import Scene, generate_scene

LABELS_FILE = "labels.jsonl"
WORLD_FILE = "world.json"
CAMERA_INFO_FILE = "camera_info.json"
_QUERY_STREAM = 7  # keeps the query rng apart from the scene rng of the same (seed, index)


def write_dataset(out: Path, scenes: int, seed: int, size: tuple[int, int] = (640, 480), *,
                  split: str = "val") -> Path:
    """Write `scenes` scenes of stream `seed` under `out` and return `out`. The same arguments give the same bytes."""
    if scenes < 1:
        raise ValueError(f"scenes={scenes!r} must be at least 1")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    camera = world_intrinsics(int(size[0]), int(size[1]))
    (out / CAMERA_INFO_FILE).write_text(json.dumps(camera.to_camera_info()) + "\n", encoding="utf-8")
    with (out / LABELS_FILE).open("w", encoding="utf-8", newline="\n") as labels:
        for record in _records(out, scenes, seed, size, split, camera):
            labels.write(json.dumps(record) + "\n")
    # How the folder was drawn, so a tool can redraw any scene (e.g. `promptbox eval --world-masks`).
    stream = {"seed": seed, "scenes": scenes, "size": list(size), "split": split}
    (out / WORLD_FILE).write_text(json.dumps(stream) + "\n", encoding="utf-8")
    return out


def _records(out: Path, scenes: int, seed: int, size: tuple[int, int], split: str,
             camera: Intrinsics) -> Iterator[dict]:
    for index in range(scenes):
        scene = generate_scene(seed, index, size, split=split)
        image = f"images/scene_{index:04d}.png"
        _write_png(out / image, cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        depth = f"depth/scene_{index:04d}.png"
        _write_png(out / depth, scene_depth_mm(scene))
        rng = np.random.default_rng([seed, index, _QUERY_STREAM])
        for number, query in enumerate(queries_for(scene, rng)):
            mask = None
            if query.truth_mask is not None:
                mask = f"masks/scene_{index:04d}_q{number:02d}.png"
                _write_png(out / mask, query.truth_mask.astype(np.uint8) * 255)
            record = _record(image, query, mask, index)
            # Depth fields come last and are optional to readers: every earlier field is as it always was.
            record["depth"] = depth
            record["camera_info"] = CAMERA_INFO_FILE
            record["centroids_3d"] = _centroids(scene, query, camera)
            yield record


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


def _centroids(scene: Scene, query: WorldQuery, camera: Intrinsics) -> list[list[float]]:
    """Per acceptable box, the truth 3D centre of what it frames: the query's own mask when it has one answer,
    otherwise the object (or else the part) with exactly that box."""
    if query.truth_mask is not None and len(query.boxes) == 1:
        owner = _framed(scene, query.boxes[0])[1]
        return [_rounded(surface_centroid(query.truth_mask, owner, camera))]
    return [_rounded(surface_centroid(*_framed(scene, box), camera)) for box in query.boxes]


def _framed(scene: Scene, box: tuple[int, int, int, int]) -> tuple[np.ndarray, str]:
    """The mask and class of the object, or else the part (with its object's class), whose box is `box`."""
    box = tuple(box)
    for obj in scene.objects:
        if obj.box_xyxy == box:
            return obj.mask, obj.cls
    for obj in scene.objects:
        for part in obj.parts:
            if part.box_xyxy == box:
                return part.mask, obj.cls
    raise RuntimeError(f"world: no object or part of scene {scene.index} has the box {box}")


def _rounded(point: tuple[float, float, float]) -> list[float]:
    return [round(v, 5) for v in point]  # 0.01 mm: far below any error the eval reports, and stable bytes


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")
