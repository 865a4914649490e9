"""The evaluation dataset: a folder of images and `labels.jsonl`, one query per line.

    {"image": "a.png", "command": "take the scissors", "boxes": [[x0, y0, x1, y1], ...], "tags": ["class"],
     "mask": "masks/a.png", "objects": [[x0, y0, x1, y1], ...]}

`boxes` lists every acceptable answer in pixel edges (x1, y1 exclusive, like Detection.box_xyxy); `[]` means the
object is absent and the right answer is "not found". `mask` (optional, nonzero = object) adds mask IoU; `objects`
(optional) are boxes of other labelled objects, for the wrong-object rate. Other keys are allowed and ignored.

Optional 3D fields (`promptbox world generate` writes all three): depth and camera_info together, centroids_3d
with them.
    "depth": "depth/a.png"          aligned to the image: 16-bit PNG/TIFF in millimetres or 32-bit float TIFF in metres
    "camera_info": "info.json"      CameraInfo as JSON (camera.read_camera_info); its K and D are used, so write a
                                    rectified camera's P[:3, :3] as K, with D zero
    "centroids_3d": [[x, y, z]]     per box, the object's visible-surface centre in metres, camera optical frame
With depth, `promptbox eval` reports how many found objects got a 3D pose; with centroids_3d too, the centroid error of
the right ones.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from promptbox.camera import Intrinsics, from_camera_info, read_camera_info
from promptbox.command import parse
from promptbox.depth import read_depth

LABELS_FILE = "labels.jsonl"
Box = tuple[float, float, float, float]
Point = tuple[float, float, float]
_DEPTH_FIELDS = ("depth", "camera_info", "centroids_3d")

_BOX_ACCEPTED = "a list of 4 finite numbers [x0, y0, x1, y1] in pixel edges with x0 < x1 and y0 < y1"


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file, line, field, value and what is accepted."""


@dataclass(frozen=True)
class Query:
    """One labelled command. `line` is its 1-based line in labels.jsonl, so reports can point back at it."""

    image: str
    command: str
    boxes: tuple[Box, ...]
    tags: tuple[str, ...] = ()
    mask: str | None = None
    objects: tuple[Box, ...] = ()
    line: int = 0
    depth: str | None = None  # the 3D fields: all set, or all None / empty
    camera_info: str | None = None
    centroids_3d: tuple[Point, ...] = ()  # one per box

    @property
    def absent(self) -> bool:
        return not self.boxes


@dataclass(frozen=True)
class Dataset:
    root: Path
    queries: tuple[Query, ...]

    def frames(self) -> OrderedDict[str, list[Query]]:
        """Queries grouped by image, in order of first appearance, so each frame is embedded once."""
        groups: OrderedDict[str, list[Query]] = OrderedDict()
        for query in self.queries:
            groups.setdefault(query.image, []).append(query)
        return groups

    def load_image(self, name: str) -> np.ndarray:
        """The frame as HxWx3 uint8 RGB."""
        path = self.root / name
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{path}: image could not be read; accepted: a png/jpg/bmp/tiff file")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def load_mask(self, query: Query, shape: tuple[int, int]) -> np.ndarray | None:
        """The query's truth mask as HxW bool (nonzero = object), or None when it has none."""
        if query.mask is None:
            return None
        path = self.root / query.mask
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise DatasetError(f"{self.root / LABELS_FILE}:{query.line}: mask {str(path)!r} could not be read")
        if mask.ndim == 3:
            mask = mask.max(axis=2)
        if mask.shape != tuple(shape):
            raise DatasetError(
                f"{self.root / LABELS_FILE}:{query.line}: mask {query.mask!r} is {mask.shape[1]}x{mask.shape[0]}, "
                f"the image is {shape[1]}x{shape[0]}; accepted: a mask of the image's size"
            )
        return mask != 0

    def load_depth(self, query: Query, shape: tuple[int, int]) -> tuple[np.ndarray, str] | None:
        """The query's depth image and its encoding (16UC1 or 32FC1), or None when it has none."""
        if query.depth is None:
            return None
        where = f"{self.root / LABELS_FILE}:{query.line}"
        try:
            depth, encoding = read_depth(self.root / query.depth)
        except ValueError as error:
            raise DatasetError(f"{where}: field 'depth': {error}") from None
        if depth.shape != tuple(shape):
            raise DatasetError(
                f"{where}: depth {query.depth!r} is {depth.shape[1]}x{depth.shape[0]}, the image is "
                f"{shape[1]}x{shape[0]}; accepted: depth aligned to the image, of its size"
            )
        return depth, encoding

    def load_intrinsics(self, query: Query) -> Intrinsics | None:
        """The query's camera (from its camera_info's K and D), or None when it has none."""
        if query.camera_info is None:
            return None
        try:
            return from_camera_info(read_camera_info(self.root / query.camera_info), rectified=False)
        except ValueError as error:
            raise DatasetError(f"{self.root / LABELS_FILE}:{query.line}: field 'camera_info': {error}") from None


def load_dataset(root: str | Path, limit: int | None = None) -> Dataset:
    """Read and check `root/labels.jsonl`; `limit` keeps only the first N queries."""
    root = Path(root)
    labels = root / LABELS_FILE
    if not root.is_dir():
        raise DatasetError(
            f"dataset {str(root)!r} is not a folder; accepted: a folder holding {LABELS_FILE} and images"
        )
    if not labels.is_file():
        raise DatasetError(f"dataset {str(root)!r} has no {LABELS_FILE}; accepted: one JSON object per line")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit={limit!r} must be at least 1")
    queries: list[Query] = []
    with labels.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue  # blank lines (a trailing newline, spacing) carry nothing
            queries.append(_query(root, labels, number, text))
            if limit is not None and len(queries) >= limit:
                break
    if not queries:
        raise DatasetError(f"{labels}: no queries; accepted: one JSON object per line")
    return Dataset(root, tuple(queries))


def _query(root: Path, labels: Path, number: int, text: str) -> Query:
    where = f"{labels}:{number}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{where}: not valid JSON ({error.msg} at column {error.colno}); "
                           "accepted: one JSON object per line") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: {_short(record)} is not a JSON object; accepted: {{\"image\": ..., "
                           "\"command\": ..., \"boxes\": [...]}")
    for name in ("image", "command", "boxes"):
        if name not in record:
            raise DatasetError(f"{where}: field {name!r} is missing; required: image, command, boxes")

    image = _string(where, "image", record["image"], "an image path relative to the dataset folder")
    if not (root / image).is_file():
        raise DatasetError(f"{where}: field 'image' = {image!r}: no such file {str(root / image)!r}")
    command = _string(where, "command", record["command"], "a command such as 'take the scissors'")
    try:
        parse(command)  # a command the locator would refuse is the dataset's fault; say so before loading models
    except ValueError as error:
        raise DatasetError(f"{where}: field 'command' = {command!r}: {error}") from None
    boxes = _boxes(where, "boxes", record["boxes"])
    objects = _boxes(where, "objects", record.get("objects", []))

    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise DatasetError(f"{where}: field 'tags' = {_short(tags)}; accepted: a list of non-empty strings")
    mask = record.get("mask")
    if mask is not None:
        mask = _string(where, "mask", mask, "a PNG path relative to the dataset folder, or null")
        if not (root / mask).is_file():
            raise DatasetError(f"{where}: field 'mask' = {mask!r}: no such file {str(root / mask)!r}")
    depth, camera_info, centroids = _depth_fields(root, where, record, len(boxes))
    return Query(image, command, boxes, tuple(dict.fromkeys(tags)), mask, objects, number, depth, camera_info,
                 centroids)


def _depth_fields(root: Path, where: str, record: dict, boxes: int
                  ) -> tuple[str | None, str | None, tuple[Point, ...]]:
    given = [name for name in _DEPTH_FIELDS if name in record]
    if not given:
        return None, None, ()
    missing = [name for name in _DEPTH_FIELDS[:2] if name not in record]
    if missing:
        raise DatasetError(f"{where}: field {given[0]!r} without {', '.join(map(repr, missing))}; accepted: depth "
                           "and camera_info together (and optionally centroids_3d), or none of them")
    paths = []
    for name in ("depth", "camera_info"):
        path = _string(where, name, record[name], "a path relative to the dataset folder")
        if not (root / path).is_file():
            raise DatasetError(f"{where}: field {name!r} = {path!r}: no such file {str(root / path)!r}")
        paths.append(path)
    if "centroids_3d" not in record:
        return paths[0], paths[1], ()  # depth without truth: the pose rate, but no centroid error
    value = record["centroids_3d"]
    accepted = f"a list of {boxes} points [x, y, z] in metres (one per box), finite, with z > 0"
    ok = isinstance(value, list) and len(value) == boxes and all(
        isinstance(p, list) and len(p) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
        and p[2] > 0
        for p in value
    )
    if not ok:
        raise DatasetError(f"{where}: field 'centroids_3d' = {_short(value)}; accepted: {accepted}")
    return paths[0], paths[1], tuple((float(p[0]), float(p[1]), float(p[2])) for p in value)


def _string(where: str, name: str, value: object, accepted: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: field {name!r} = {_short(value)}; accepted: {accepted}")
    return value


def _boxes(where: str, name: str, value: object) -> tuple[Box, ...]:
    if not isinstance(value, list):
        raise DatasetError(
            f"{where}: field {name!r} = {_short(value)}; accepted: a list of boxes, each {_BOX_ACCEPTED}"
        )
    boxes = []
    for index, box in enumerate(value):
        ok = (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
            and box[0] < box[2]
            and box[1] < box[3]
        )
        if not ok:
            raise DatasetError(f"{where}: field {name!r}[{index}] = {_short(box)}; accepted: {_BOX_ACCEPTED}")
        boxes.append(tuple(float(v) for v in box))
    return tuple(boxes)


def _short(value: object, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."
