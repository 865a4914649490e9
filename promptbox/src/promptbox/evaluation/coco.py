"""COCO instances -> an eval dataset: one "take the {category}" per category in an image (every non-crowd instance
an acceptable box), plus a few categories the image lacks, whose right answer is "not found"."""

from __future__ import annotations

import json
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from promptbox.command import parse
from promptbox.evaluation.dataset import LABELS_FILE

IMAGES_DIR = "images"  # under OUT, so the converted folder is self-contained


@dataclass(frozen=True)
class Conversion:
    out: Path
    images: int
    present: int  # queries whose category is in the image
    absent: int  # queries whose category is not
    crowd_skipped: int  # iscrowd regions: neither an answer nor an "other object"
    degenerate_skipped: int  # zero-area boxes after clipping to the image


class CocoError(ValueError):
    """A COCO file that cannot be converted; the message names the file, the entry and the key."""


def convert_coco(
    instances: str | Path, images_dir: str | Path, out: str | Path, *, absent: int = 2, seed: int = 0
) -> Conversion:
    """Write `out/labels.jsonl` and copy the images into `out/images/`."""
    instances, images_dir, out = Path(instances), Path(images_dir), Path(out)
    if absent < 0:
        raise CocoError(f"absent={absent!r} must be 0 or more")
    if not instances.is_file():
        raise CocoError(f"{instances}: no such file; accepted: a COCO instances json (images, annotations, categories)")
    if not images_dir.is_dir():
        raise CocoError(f"{images_dir}: not a folder; accepted: the folder holding the COCO images")
    try:
        coco = json.loads(instances.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CocoError(f"{instances}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(coco, dict):
        raise CocoError(f"{instances}: the top level is not a JSON object; accepted: a COCO instances json")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise CocoError(f"{instances}: key {key!r} is missing or not a list; required: images, annotations, "
                            "categories")

    names = {}
    for index, category in enumerate(coco["categories"]):
        _require(instances, f"categories[{index}]", category, ("id", "name"))
        name = str(category["name"]).strip()
        try:
            parse(f"take the {name}")
        except ValueError as error:
            raise CocoError(f"{instances}: categories[{index}] name {name!r} makes no command: {error}") from None
        names[category["id"]] = name
    images = {}
    for index, image in enumerate(coco["images"]):
        _require(instances, f"images[{index}]", image, ("id", "file_name"))
        source = images_dir / image["file_name"]
        if not source.is_file():
            raise CocoError(f"{instances}: images[{index}] file_name {image['file_name']!r}: no such file {source}")
        images[image["id"]] = image

    # Per image: category -> its non-crowd boxes; and every category seen there, crowd included.
    boxes: dict = defaultdict(lambda: defaultdict(list))
    seen: dict = defaultdict(set)
    crowd = degenerate = 0
    for index, annotation in enumerate(coco["annotations"]):
        where = f"annotations[{index}]"
        _require(instances, where, annotation, ("image_id", "category_id", "bbox"))
        image_id, category_id = annotation["image_id"], annotation["category_id"]
        if image_id not in images:
            raise CocoError(f"{instances}: {where} image_id {image_id!r} is not in images")
        if category_id not in names:
            raise CocoError(f"{instances}: {where} category_id {category_id!r} is not in categories")
        seen[image_id].add(category_id)
        if annotation.get("iscrowd", 0):
            crowd += 1
            continue
        box = _edges(instances, where, annotation["bbox"], images[image_id])
        if box is None:
            degenerate += 1
            continue
        boxes[image_id][category_id].append(box)

    out.mkdir(parents=True, exist_ok=True)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    lines, present_count, absent_count = [], 0, 0
    for image_id, image in images.items():
        relative = f"{IMAGES_DIR}/{image['file_name']}"
        _copy(images_dir / image["file_name"], out / relative)
        in_image = boxes[image_id]
        for category_id in sorted(in_image):
            others = [b for other, found in in_image.items() if other != category_id for b in found]
            lines.append({"image": relative, "command": f"take the {names[category_id]}",
                          "boxes": in_image[category_id], "objects": others, "tags": ["class"],
                          "category": names[category_id], "coco_image_id": image_id})
            present_count += 1
        # Per-image generator: the choice for one image doesn't shift when others are added or removed.
        rng = random.Random(f"{seed}:{image_id}")
        candidates = sorted(c for c in names if c not in seen[image_id])
        for category_id in rng.sample(candidates, min(absent, len(candidates))):
            all_boxes = [b for found in in_image.values() for b in found]
            lines.append({"image": relative, "command": f"take the {names[category_id]}", "boxes": [],
                          "objects": all_boxes, "tags": ["absent"], "category": names[category_id],
                          "coco_image_id": image_id})
            absent_count += 1
    with (out / LABELS_FILE).open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
    return Conversion(out, len(images), present_count, absent_count, crowd, degenerate)


def _require(path: Path, where: str, entry: object, keys: tuple[str, ...]) -> None:
    if not isinstance(entry, dict):
        raise CocoError(f"{path}: {where} is not a JSON object")
    for key in keys:
        if key not in entry:
            raise CocoError(f"{path}: {where} key {key!r} is missing; required: {', '.join(keys)}")


def _edges(path: Path, where: str, bbox: object, image: dict) -> list[float] | None:
    """COCO [x, y, w, h] -> pixel-edge [x0, y0, x1, y1] clipped to the image; None when nothing is left."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise CocoError(f"{path}: {where} bbox {bbox!r}; accepted: [x, y, width, height] in pixels")
    x, y, w, h = (float(v) for v in bbox)
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), x + w, y + h
    if "width" in image and "height" in image:
        x1, y1 = min(x1, float(image["width"])), min(y1, float(image["height"]))
    box = [round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)]
    return box if box[2] > box[0] and box[3] > box[1] else None


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.samefile(source):
        return
    shutil.copy2(source, target)
