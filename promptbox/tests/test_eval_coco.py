"""convert-coco on a hand-made COCO file, then `promptbox eval` end to end on the converted folder with an oracle."""

from __future__ import annotations

import json

import pytest
from eval_support import Oracle, write_image

from promptbox.evaluation.cli import main
from promptbox.evaluation.coco import CocoError, convert_coco
from promptbox.evaluation.dataset import load_dataset

CATEGORIES = {1: "cat", 2: "dog", 3: "cup", 4: "book", 5: "ball"}


@pytest.fixture
def coco(tmp_path):
    source = tmp_path / "coco"
    write_image(source / "img" / "a.png", 60, 40, 100)
    write_image(source / "img" / "b.png", 50, 50, 120)
    instances = {
        "images": [{"id": 7, "file_name": "a.png", "width": 60, "height": 40},
                   {"id": 9, "file_name": "b.png", "width": 50, "height": 50}],
        "categories": [{"id": k, "name": v, "supercategory": "x"} for k, v in CATEGORIES.items()],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [30.5, 5, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 2, "bbox": [20, 20, 10, 10], "iscrowd": 0},
            {"id": 4, "image_id": 7, "category_id": 4, "bbox": [0, 0, 20, 20], "iscrowd": 1},  # crowd: skipped
            {"id": 5, "image_id": 9, "category_id": 3, "bbox": [10, 10, 20, 15], "iscrowd": 0},
            {"id": 6, "image_id": 9, "category_id": 1, "bbox": [40, 40, 20, 20], "iscrowd": 0},  # clipped at 50
        ],
    }
    path = source / "instances.json"
    path.write_text(json.dumps(instances))
    return path, source / "img"


def _lines(out):
    return [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]


def test_convert_writes_one_query_per_category_and_absent_ones(coco, tmp_path):
    instances, images = coco
    out = tmp_path / "out"
    result = convert_coco(instances, images, out, absent=2, seed=3)
    assert (result.images, result.present, result.absent, result.crowd_skipped) == (2, 4, 4, 1)
    lines = _lines(out)
    present = [(q["image"], q["command"], q["boxes"], q["objects"]) for q in lines if q["boxes"]]
    assert present == [
        # [x, y, w, h] -> [x, y, x + w, y + h]
        ("images/a.png", "take the cat", [[5, 5, 15, 15], [30.5, 5, 40.5, 15]], [[20, 20, 30, 30]]),
        ("images/a.png", "take the dog", [[20, 20, 30, 30]], [[5, 5, 15, 15], [30.5, 5, 40.5, 15]]),
        ("images/b.png", "take the cat", [[40, 40, 50, 50]], [[10, 10, 30, 25]]),  # clipped to the 50x50 frame
        ("images/b.png", "take the cup", [[10, 10, 30, 25]], [[40, 40, 50, 50]]),
    ]
    assert all(q["tags"] == ["class"] for q in lines if q["boxes"])
    absent = [q for q in lines if not q["boxes"]]
    assert all(q["tags"] == ["absent"] for q in absent)
    # Really absent: no annotation of that category in the image, crowd included (the book is in a.png as a crowd).
    in_image = {"images/a.png": {"cat", "dog", "book"}, "images/b.png": {"cup", "cat"}}
    for image, names in in_image.items():
        chosen = [q["category"] for q in absent if q["image"] == image]
        assert len(chosen) == 2 and len(set(chosen)) == 2
        assert not set(chosen) & names
        assert all(q["command"] == f"take the {q['category']}" for q in absent)
    assert {q["category"] for q in absent if q["image"] == "images/a.png"} == {"cup", "ball"}  # the only two left
    assert (out / "images" / "a.png").is_file() and (out / "images" / "b.png").is_file()
    # Deterministic: the same seed writes the same file.
    first = (out / "labels.jsonl").read_text()
    convert_coco(instances, images, tmp_path / "again", absent=2, seed=3)
    assert (tmp_path / "again" / "labels.jsonl").read_text() == first
    # The converted folder is a valid dataset.
    assert len(load_dataset(out).queries) == 8


def test_convert_errors_name_the_problem(coco, tmp_path):
    instances, images = coco
    with pytest.raises(CocoError, match="no such file"):
        convert_coco(tmp_path / "missing.json", images, tmp_path / "out")
    data = json.loads(instances.read_text())
    del data["annotations"][0]["bbox"]
    instances.write_text(json.dumps(data))
    with pytest.raises(CocoError, match=r"annotations\[0\] key 'bbox' is missing"):
        convert_coco(instances, images, tmp_path / "out")
    del data["categories"]
    instances.write_text(json.dumps(data))
    with pytest.raises(CocoError, match="key 'categories' is missing"):
        convert_coco(instances, images, tmp_path / "out")


def test_eval_end_to_end_on_the_converted_folder(coco, tmp_path, capsys):
    instances, images = coco
    out = tmp_path / "out"
    assert main(["convert-coco", str(instances), str(images), str(out), "--absent", "2"]) == 0
    assert "4 present, 4 absent" in capsys.readouterr().out

    # The oracle knows the truth of each (frame, command): frames differ in width (60 and 50).
    truth = {(60 if q["image"] == "images/a.png" else 50, q["command"]): q["boxes"] for q in _lines(out)}
    configs = []

    def make_locator(config):
        configs.append(config)

        def answer(image, command, mode):
            boxes = truth[(image.shape[1], command)]
            if mode == "fast":  # fast never finds a cat
                return tuple(boxes[0]) if boxes and command != "take the cat" else None
            return tuple(boxes[-1]) if boxes else None

        return Oracle(answer)

    sheet = tmp_path / "worst.png"
    code = main([str(out), "--mode", "exact,fast", "--json", "--sheet", str(sheet), "--min-score", "0.3"],
                make_locator=make_locator)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert configs[0].mode == "exact" and configs[0].min_score == 0.3
    payload = json.loads(captured.out)
    assert payload["queries"] == 8 and payload["frames"] == 2
    exact, fast = payload["modes"]["exact"], payload["modes"]["fast"]
    assert exact["all"]["accuracy"] == {"value": 1.0, "hits": 8, "total": 8}
    assert exact["absent"]["not_found_recall"]["value"] == 1.0
    # fast: both cats not found (2 misses) of 4 present; the 4 absent ones right -> 6 of 8
    assert fast["all"]["accuracy"]["hits"] == 6
    assert fast["class"]["not_found_precision"] == {"value": 0.0, "hits": 0, "total": 2}
    assert sheet.is_file() and "wrote 16 worst cases" in captured.err

    # --limit and the table output
    assert main([str(out), "--limit", "2"], make_locator=make_locator) == 0
    table = capsys.readouterr().out
    assert "promptbox eval: 2 queries on 1 frames" in table
