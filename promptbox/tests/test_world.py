"""The synthetic world: deterministic scenes, exact masks and boxes, and queries whose truth the scene bears out.

Each query is re-checked from its command text and the scene alone (parse the command, look at the objects), not
from the generator's own bookkeeping, so a generator that labels the wrong mug fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from promptbox.command import parse
from promptbox.world import (
    CLASSES,
    COLOURS,
    TAGS,
    UNSEEN_PAIRS,
    Scene,
    WorldObject,
    WorldQuery,
    generate_scene,
    queries_for,
    write_dataset,
)
from promptbox.world.cli import main as world_main
from promptbox.world.commands import SIDE_GAP, SIZE_RATIO
from promptbox.world.scene import FAR_GAP, NEAR_GAP, size_scale

SIZE = (320, 240)
SCENES = 40


@pytest.fixture(scope="module")
def world() -> list[tuple[Scene, list[WorldQuery]]]:
    """40 validation scenes at 320x240 with their queries, shared by the checks below."""
    out = []
    for index in range(SCENES):
        scene = generate_scene(11, index, SIZE)
        out.append((scene, queries_for(scene, np.random.default_rng(index))))
    return out


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _centre_x(box: tuple[int, int, int, int]) -> float:
    return (box[0] + box[2]) / 2


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


# --- determinism --------------------------------------------------------------------------------------------------


def test_same_seed_same_scene_and_different_seed_different_scene() -> None:
    a, b = generate_scene(5, 3, SIZE), generate_scene(5, 3, SIZE)
    assert a.image.tobytes() == b.image.tobytes()
    assert [(o.cls, o.colour, o.box_xyxy) for o in a.objects] == [(o.cls, o.colour, o.box_xyxy) for o in b.objects]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects, strict=True))
    assert a.image.shape == (SIZE[1], SIZE[0], 3) and a.image.dtype == np.uint8
    for other in (generate_scene(6, 3, SIZE), generate_scene(5, 4, SIZE), generate_scene(5, 3, SIZE, split="train")):
        assert other.image.tobytes() != a.image.tobytes()


def test_write_dataset_is_byte_identical_for_the_same_arguments(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", 3, 7, (160, 120))
    second = write_dataset(tmp_path / "b", 3, 7, (160, 120))
    other = write_dataset(tmp_path / "c", 3, 8, (160, 120))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert len(files) > 4
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "labels.jsonl").read_bytes() != (other / "labels.jsonl").read_bytes()


def test_bad_split_and_size_are_refused() -> None:
    with pytest.raises(ValueError, match="split='training'"):
        generate_scene(0, 0, SIZE, split="training")
    with pytest.raises(ValueError, match="too small"):
        generate_scene(0, 0, (32, 24))


# --- masks and boxes ----------------------------------------------------------------------------------------------


def test_masks_are_exact_non_empty_disjoint_and_agree_with_boxes(world) -> None:
    for scene, _ in world:
        assert 3 <= len(scene.objects) <= 8
        covered = np.zeros(scene.image.shape[:2], np.int32)
        for obj in scene.objects:
            assert obj.mask.dtype == bool and obj.mask.shape == scene.image.shape[:2]
            assert obj.mask.any() and obj.area == int(obj.mask.sum())
            assert obj.box_xyxy == _box(obj.mask)
            assert [p.name for p in obj.parts] == list(CLASSES[obj.cls].parts)
            assert obj.parts[0].colour == obj.colour and obj.colour in CLASSES[obj.cls].colours
            union = np.zeros_like(obj.mask)
            for part in obj.parts:
                assert part.mask.any(), (obj.cls, part.name)
                assert part.box_xyxy == _box(part.mask)
                assert not (part.mask & ~obj.mask).any()
                assert not (union & part.mask).any()  # parts do not overlap either
                union |= part.mask
            assert np.array_equal(union, obj.mask)
            assert len({p.colour for p in obj.parts}) == len(obj.parts)  # every part visibly distinct
            covered += obj.mask
        assert covered.max() == 1  # visible pixels belong to one object only
        assert np.array_equal(scene.table_mask, covered == 0)


def test_object_colours_are_legible_in_the_image(world) -> None:
    """The main part's median colour lies nearest its own palette entry, despite shading, lighting and noise."""
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], np.float64)
    hits = total = 0
    for scene, _ in world:
        for obj in scene.objects:
            inner = cv2.erode(obj.parts[0].mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            pixels = scene.image[inner if inner.sum() >= 5 else obj.parts[0].mask].astype(np.float64)
            median = np.median(pixels, axis=0)
            hits += names[int(np.argmin(((palette - median) ** 2).sum(axis=1)))] == obj.colour
            total += 1
    assert hits >= 0.95 * total, (hits, total)


def test_scenes_vary_surface_and_hold_pairs_of_one_class(world) -> None:
    assert {s.surface for s, _ in world} == {"wood", "cloth", "plain"}
    pairs = sum(max(Counter(o.cls for o in s.objects).values()) >= 2 for s, _ in world)
    assert 0.3 * SCENES <= pairs <= 0.9 * SCENES


# --- queries ------------------------------------------------------------------------------------------------------


def _boxes_of(objs: list[WorldObject]) -> set[tuple[int, int, int, int]]:
    return {o.box_xyxy for o in objs}


def _check_query(scene: Scene, query: WorldQuery) -> None:
    """Re-derive the truth of one query from its command and the scene, and compare."""
    target = parse(query.command)
    tags = set(query.tags)
    by_class: dict[str, list[WorldObject]] = {}
    for obj in scene.objects:
        by_class.setdefault(obj.cls, []).append(obj)
    scale = size_scale(scene.image.shape[1], scene.image.shape[0])
    answers = set(query.boxes)
    assert len(answers) == len(query.boxes)
    assert not answers & set(query.objects), "an acceptable answer is listed as a wrong one"
    assert (query.truth_mask is not None) == (len(query.boxes) == 1)
    if query.truth_mask is not None:
        assert _box(query.truth_mask) == query.boxes[0]

    if "part" in tags:
        part, _, holder = target.phrase.partition(" of ")
        *colour, cls = holder.split()
        assert part in CLASSES[cls].parts[:], target.phrase
        holders = [o for o in by_class[cls] if not colour or o.colour == colour[0]]
        parts = [o.parts[CLASSES[cls].parts.index(part)] for o in holders]
        assert answers == {p.box_xyxy for p in parts}
        for obj, p in zip(holders, parts, strict=True):
            assert obj.box_xyxy[0] <= p.box_xyxy[0] and obj.box_xyxy[1] <= p.box_xyxy[1]
            assert p.box_xyxy[2] <= obj.box_xyxy[2] and p.box_xyxy[3] <= obj.box_xyxy[3]
            assert obj.box_xyxy not in query.objects  # the parent contains the truth: not a wrong answer
        assert len(query.objects) == len(scene.objects) - len(holders)
        return
    assert len(query.objects) == len(scene.objects) - len(query.boxes)
    assert answers | set(query.objects) == _boxes_of(scene.objects)

    if "absent" in tags:
        assert query.boxes == []
        *colour, cls = target.phrase.split()
        assert cls in CLASSES
        if "attribute" in tags:
            assert colour and not any(o.colour == colour[0] for o in by_class.get(cls, []))
            assert cls in by_class  # a present class in a colour it does not have
        else:
            assert not colour and cls not in by_class
    elif "spatial" in tags:
        cls = target.phrase
        objs = by_class[cls]
        assert len(objs) >= 2 and len(query.boxes) == 1
        if target.spatial in ("left", "right"):
            xs = sorted((_centre_x(o.box_xyxy), o.box_xyxy) for o in objs)
            best, runner = (xs[0], xs[1]) if target.spatial == "left" else (xs[-1], xs[-2])
            assert query.boxes[0] == best[1]
            assert abs(best[0] - runner[0]) >= SIDE_GAP * scale
        else:
            areas = sorted((o.area, o.box_xyxy) for o in objs)
            best, runner = (areas[-1], areas[-2]) if target.spatial == "biggest" else (areas[0], areas[1])
            assert target.spatial in ("biggest", "smallest")
            assert query.boxes[0] == best[1]
            assert max(best[0], runner[0]) >= SIZE_RATIO * min(best[0], runner[0])
    elif "relation" in tags:
        objs = by_class[target.phrase]
        (anchor,) = by_class[target.anchor]
        assert len(objs) >= 2 and len(query.boxes) == 1
        truth = query.boxes[0]
        if target.relation == "next to":
            gaps = sorted(_gap(o.box_xyxy, anchor.box_xyxy) for o in objs if o.box_xyxy != truth)
            assert _gap(truth, anchor.box_xyxy) < NEAR_GAP * scale
            assert gaps[0] > FAR_GAP * scale
        else:
            assert target.relation in ("left of", "right of")
            sign = 1 if target.relation == "left of" else -1
            edge = anchor.box_xyxy[0] if sign == 1 else anchor.box_xyxy[2]
            assert sign * (_centre_x(truth) - edge) < 0
            others = [o for o in objs if o.box_xyxy != truth]
            assert all(sign * (_centre_x(o.box_xyxy) - edge) > 0 for o in others)
    elif "attribute" in tags:
        colour, cls = target.phrase.split()
        assert answers == _boxes_of([o for o in by_class[cls] if o.colour == colour])
        assert ("unseen" in tags) == ((colour, cls) in UNSEEN_PAIRS)
        if "unseen" not in tags:
            assert any(o.colour != colour for o in by_class[cls])  # the colour is what tells them apart
    else:
        assert "class" in tags
        cls = target.phrase
        assert answers == _boxes_of(by_class[cls])
        assert ("whole" in tags) == (len(CLASSES[cls].parts) > 1)


def test_every_query_is_true_of_its_scene(world) -> None:
    checked = 0
    for scene, queries in world:
        assert 4 <= len(queries) <= 10
        assert len({q.command for q in queries}) == len(queries)
        for query in queries:
            assert set(query.tags) <= set(TAGS), query.tags
            _check_query(scene, query)
            checked += 1
    assert checked >= 6 * SCENES


def test_every_command_parses_to_its_target_and_every_tag_occurs(world) -> None:
    tags: Counter[str] = Counter()
    verbs: set[str] = set()
    for _, queries in world:
        for query in queries:
            target = parse(query.command)
            assert target.phrase.split()[-1] in CLASSES or " of " in target.phrase, query.command
            verbs.add(query.command.split(" the ")[0])
            tags.update(query.tags)
    assert all(tags[t] >= 3 for t in TAGS), tags
    assert len(verbs) >= 4


def test_unseen_pairs_never_occur_in_train_and_do_in_val() -> None:
    seen: set[tuple[str, str]] = set()
    for index in range(200):
        scene = generate_scene(3, index, (160, 120), split="train")
        pairs = {(o.colour, o.cls) for o in scene.objects}
        assert not pairs & UNSEEN_PAIRS, (index, pairs & UNSEEN_PAIRS)
        seen |= pairs
        for query in queries_for(scene, np.random.default_rng(index)):
            assert "unseen" not in query.tags
            words = tuple(parse(query.command).phrase.split()[-2:])
            assert words not in UNSEEN_PAIRS, query.command  # not even as an absent-colour question
    # Each held-out colour and class still shows up in training, only not together.
    assert {c for c, _ in UNSEEN_PAIRS} <= {c for c, _ in seen}
    assert {k for _, k in UNSEEN_PAIRS} <= {k for _, k in seen}


def test_val_queries_ask_about_unseen_pairs(world) -> None:
    unseen = [q for _, qs in world for q in qs if "unseen" in q.tags]
    assert len(unseen) >= 4
    for query in unseen:
        assert tuple(parse(query.command).phrase.split()) in UNSEEN_PAIRS and query.boxes


# --- files and the command line -----------------------------------------------------------------------------------


def test_write_dataset_writes_images_masks_and_labels(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "world", 2, 4, (160, 120))
    assert out == tmp_path / "world"
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert records and {r["scene"] for r in records} == {0, 1}
    for index in (0, 1):
        scene = generate_scene(4, index, (160, 120))
        image = cv2.cvtColor(cv2.imread(str(out / f"images/scene_{index:04d}.png")), cv2.COLOR_BGR2RGB)
        assert np.array_equal(image, scene.image)  # written as RGB, not channel-swapped
    for record in records:
        assert list(record)[:5] == ["image", "command", "boxes", "tags", "objects"]
        assert (out / record["image"]).is_file()
        parse(record["command"])
        if len(record["boxes"]) == 1:
            mask = cv2.imread(str(out / record["mask"]), cv2.IMREAD_UNCHANGED)
            assert mask.dtype == np.uint8 and mask.ndim == 2 and set(np.unique(mask)) == {0, 255}
            assert list(_box(mask > 0)) == record["boxes"][0]
        else:
            assert "mask" not in record
    # The evaluation reader takes the folder as it is.
    from promptbox.evaluation.dataset import load_dataset

    assert len(load_dataset(out).queries) == len(records)


def test_cli_generates_and_refuses_a_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptbox.cli import main as promptbox_main

    assert promptbox_main(["world", "generate", str(tmp_path / "w"), "--scenes", "2", "--seed", "1",
                           "--size", "160x120"]) == 0
    summary = capsys.readouterr().out
    assert "2 scenes" in summary and "queries" in summary and "unseen" in summary
    assert (tmp_path / "w" / "images" / "scene_0001.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        world_main(["generate", str(tmp_path / "x"), "--size", "640by480"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "640by480" in error and "WIDTHxHEIGHT" in error
    assert not (tmp_path / "x").exists()


def test_the_world_never_imports_torch() -> None:
    code = ("import sys, promptbox.world, promptbox.world.cli; promptbox.world.generate_scene(0, 0, (96, 72)); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
