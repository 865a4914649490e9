"""Reading labels.jsonl: what is accepted, and errors that name the file, line, field and value."""

from __future__ import annotations

import pytest
from eval_support import write_image, write_labels

from promptbox.evaluation.dataset import DatasetError, load_dataset

GOOD = {"image": "a.png", "command": "take the mug", "boxes": [[1, 2, 30, 40]], "tags": ["class"]}


@pytest.fixture
def root(tmp_path):
    write_image(tmp_path / "a.png", 64, 48, 100)
    write_image(tmp_path / "b.png", 64, 48, 120)
    return tmp_path


def test_a_good_file_loads_with_groups_per_frame(root):
    write_labels(root, [GOOD, {**GOOD, "image": "b.png", "boxes": [], "scene": 3},
                        {**GOOD, "command": "take the cup", "objects": [[0, 0, 5, 5]]}])
    dataset = load_dataset(root)
    assert len(dataset.queries) == 3
    assert dataset.queries[0].boxes == ((1.0, 2.0, 30.0, 40.0),)
    assert dataset.queries[1].absent and dataset.queries[1].line == 2
    assert dataset.queries[2].objects == ((0.0, 0.0, 5.0, 5.0),)
    assert [(name, len(qs)) for name, qs in dataset.frames().items()] == [("a.png", 2), ("b.png", 1)]
    assert len(load_dataset(root, limit=2).queries) == 2


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ('{"image": "a.png", "command": ', r"labels.jsonl:2: not valid JSON"),
        ('[1, 2]', r"labels.jsonl:2: \[1, 2\] is not a JSON object"),
        ('{"image": "a.png", "boxes": []}', r"labels.jsonl:2: field 'command' is missing"),
        ('{"image": "a.png", "command": "take the mug", "boxes": [[30, 2, 10, 40]]}',
         r"labels.jsonl:2: field 'boxes'\[0\] = \[30, 2, 10, 40\]; accepted: .*x0 < x1"),
        ('{"image": "a.png", "command": "take the mug", "boxes": [[1, 2, 3]]}',
         r"labels.jsonl:2: field 'boxes'\[0\] = \[1, 2, 3\]; accepted: a list of 4"),
        ('{"image": "a.png", "command": "take the mug", "boxes": "all"}',
         r"labels.jsonl:2: field 'boxes' = \"all\"; accepted: a list of boxes"),
        ('{"image": "a.png", "command": "take the mug", "boxes": [], "objects": [[5, 5, 5, 9]]}',
         r"labels.jsonl:2: field 'objects'\[0\]"),
        ('{"image": "nope.png", "command": "take the mug", "boxes": []}',
         r"labels.jsonl:2: field 'image' = 'nope.png': no such file"),
        ('{"image": "a.png", "command": "  ", "boxes": []}', r"labels.jsonl:2: field 'command' = \"  \"; accepted"),
        ('{"image": "a.png", "command": "take the mug", "boxes": [], "tags": "class"}',
         r"labels.jsonl:2: field 'tags' = \"class\"; accepted: a list of non-empty strings"),
        ('{"image": "a.png", "command": "take the mug", "boxes": [], "mask": "m.png"}',
         r"labels.jsonl:2: field 'mask' = 'm.png': no such file"),
    ],
)
def test_a_malformed_line_names_line_field_and_value(root, line, pattern):
    write_labels(root, [GOOD])
    with (root / "labels.jsonl").open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(root)


def test_a_missing_folder_or_labels_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="has no labels.jsonl"):
        load_dataset(tmp_path)
