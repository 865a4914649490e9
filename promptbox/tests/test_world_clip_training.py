"""The world CLIP trainer's soft targets (tools/world/train_clip.py): the vectorised matrix a GPU run uses must say
exactly what fits() says for every caption and crop, or the model learns wrong positives."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "world"


@pytest.fixture(scope="module")
def train_clip():
    sys.path.insert(0, str(TOOLS))
    try:
        yield importlib.import_module("train_clip")
    finally:
        sys.path.remove(str(TOOLS))


def test_fit_matrix_is_fits_for_every_pair(train_clip):
    Label = train_clip.Label
    labels = [
        Label("object", "mug", "red"), Label("object", "mug", "blue"), Label("object", "book", "red"),
        Label("part", "mug", "red", "handle"), Label("part", "mug", "blue", "body"),
        Label("scenery", surface="wood"), Label("scenery", surface="cloth"),
    ]
    claims = [
        Label("object", "mug", ""), Label("object", "mug", "red"), Label("object", "book", ""),
        Label("part", "mug", "", "handle"), Label("part", "mug", "blue", "body"), Label("part", "mug", "", "body"),
        Label("scenery"), Label("scenery", surface="wood"),
        Label("object", "bowl", ""),  # a class no crop shows: a code the labels never met
    ]
    codes = train_clip.LabelCodes(labels)
    matrix = codes.fit_matrix(claims, codes.codes)
    expected = np.array([[train_clip.fits(c, lb) for c in claims] for lb in labels])
    assert matrix.shape == expected.shape
    np.testing.assert_array_equal(matrix, expected)
    assert expected.any() and not expected.all()  # the case has both positives and negatives


def test_parallel_build_draws_the_same_crops(train_clip):
    one = train_clip.build_data(3, 2, (160, 120), "train", workers=1)
    two = train_clip.build_data(3, 2, (160, 120), "train", workers=2)
    np.testing.assert_array_equal(one[0], two[0])
    assert one[1] == two[1] and len(one[1]) > 0


def test_a_greyscale_crop_fits_only_captions_without_colour(train_clip):
    Label = train_clip.Label
    labels = [Label("object", "mug", "red"), Label("part", "mug", "red", "handle")]
    claims = [Label("object", "mug", ""), Label("object", "mug", "red"), Label("part", "mug", "", "handle"),
              Label("part", "mug", "red", "handle")]
    codes = train_clip.LabelCodes(labels)
    in_colour = codes.fit_matrix(claims, codes.codes)
    in_grey = codes.fit_matrix(claims, train_clip.without_colour(codes.codes, np.array([True, True])))
    np.testing.assert_array_equal(in_colour, [[True, True, False, False], [False, False, True, True]])
    np.testing.assert_array_equal(in_grey, [[True, False, False, False], [False, False, True, False]])
    mixed = codes.fit_matrix(claims, train_clip.without_colour(codes.codes, np.array([True, False])))
    np.testing.assert_array_equal(mixed, [[True, False, False, False], [False, False, True, True]])


def test_a_greyscale_caption_names_no_colour(train_clip):
    from promptbox.world.catalogue import COLOURS

    rng = np.random.default_rng(0)
    label = train_clip.Label("part", "mug", "red", "handle")
    grey = [train_clip.caption(label, rng, colour_seen=False) for _ in range(50)]
    shown = [train_clip.caption(label, rng) for _ in range(50)]
    assert not any(set(text.split()) & set(COLOURS) for text, _ in grey)
    assert all(claim.colour == "" for _, claim in grey)
    assert any("red" in text.split() for text, _ in shown)  # the colour is named when it is seen


def test_greyscale_is_luma_in_every_channel(train_clip):
    import torch

    crops = torch.tensor([[[[215, 30, 35], [35, 160, 60]]]], dtype=torch.uint8)
    grey = train_clip.greyscale(crops)
    assert grey.shape == crops.shape and grey.dtype == torch.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert grey[0, 0, :, 0].tolist() == [86, 111]  # 0.299 R + 0.587 G + 0.114 B, rounded
