"""Provenance files: weights that are not the released models are tagged wherever results are shown, and a
provenance file that does not match its weights is an error, never a silent tag or untag."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from transformers import CLIPConfig, CLIPModel

from promptbox import clip_tokenizer, provenance, stand_ins, weight_locations, weights
from promptbox.detection import Detection, NotFound, summary

TINY_CLIP = CLIPConfig(
    vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1,
                   "num_attention_heads": 2, "intermediate_size": 64},
    text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                 "max_position_embeddings": 77, "vocab_size": 49408},
    projection_dim=16,
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(record: Path, kind: str, sha256: str) -> None:
    record.write_text(json.dumps({"weights": kind, "sha256": sha256}))


@pytest.fixture
def world_sam(tmp_path: Path) -> Path:
    path = stand_ins.write_random_sam_checkpoint(tmp_path / "sam" / weight_locations.SAM_FILENAME, seed=3)
    _write(provenance.sam_provenance_path(path), provenance.SYNTHETIC_WORLD, _sha(path))
    return path


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(TINY_CLIP).save_pretrained(directory, safe_serialization=True)
    clip_tokenizer.write_clip_vocab_files(directory)
    return directory


def test_a_matching_provenance_file_tags_the_sam_checkpoint(world_sam: Path):
    assert weights.sam_kind(str(world_sam)) == provenance.SYNTHETIC_WORLD
    _, is_random = weights.load_sam(str(world_sam), "cpu", False)
    assert not is_random


def test_released_sam_weights_have_no_tag(sam_checkpoint: Path):
    assert not provenance.sam_provenance_path(sam_checkpoint).exists()
    assert weights.sam_kind(str(sam_checkpoint)) is None


def test_a_stale_provenance_file_is_an_error_naming_both_files(world_sam: Path):
    _write(provenance.sam_provenance_path(world_sam), provenance.SYNTHETIC_WORLD, "0" * 64)
    with pytest.raises(weights.WeightsError, match="stale") as error:
        weights.load_sam(str(world_sam), "cpu", False)
    assert str(world_sam) in str(error.value) and "0" * 64 in str(error.value)
    with pytest.raises(weights.WeightsError, match="stale"):
        weights.sam_kind(str(world_sam))


def test_an_unknown_kind_or_broken_file_is_an_error(world_sam: Path):
    record = provenance.sam_provenance_path(world_sam)
    _write(record, "pretrained-on-magic", _sha(world_sam))
    with pytest.raises(weights.WeightsError, match="'pretrained-on-magic' is not a known kind; accepted: synthetic"):
        weights.sam_kind(str(world_sam))
    record.write_text("{not json")
    with pytest.raises(weights.WeightsError, match="could not be read"):
        weights.load_sam(str(world_sam), "cpu", False)


def test_a_clip_directory_is_tagged_by_its_provenance_file(tiny_clip_dir: Path):
    assert weights.clip_kind(str(tiny_clip_dir)) is None
    record = provenance.clip_provenance_path(tiny_clip_dir)
    _write(record, provenance.SYNTHETIC_WORLD, _sha(tiny_clip_dir / "model.safetensors"))
    try:
        assert weights.clip_kind(str(tiny_clip_dir)) == provenance.SYNTHETIC_WORLD
        _, _, is_random = weights.load_clip(str(tiny_clip_dir), "cpu", False)
        assert not is_random
        _write(record, provenance.SYNTHETIC_WORLD, "f" * 64)
        with pytest.raises(weights.WeightsError, match="stale"):
            weights.load_clip(str(tiny_clip_dir), "cpu", False)
    finally:
        record.unlink()


def test_random_weights_outrank_synthetic_world_weights_in_the_tag():
    assert provenance.tag({None}) == ""
    assert provenance.tag({provenance.SYNTHETIC_WORLD, None}) == "[SYNTHETIC-WORLD WEIGHTS]"
    assert provenance.tag({provenance.SYNTHETIC_WORLD, provenance.RANDOM}) == "[RANDOM WEIGHTS]"


def test_answers_lead_with_their_weights_tag():
    found = Detection("mug", (1.0, 2.0, 30.0, 40.0), 0.9, None, weights_tag="[SYNTHETIC-WORLD WEIGHTS]")
    missing = NotFound("mug", "nothing passed", weights_tag="[SYNTHETIC-WORLD WEIGHTS]")
    assert summary(found, 0.1).startswith("[SYNTHETIC-WORLD WEIGHTS] found 'mug'")
    assert summary(missing, 0.1).startswith("[SYNTHETIC-WORLD WEIGHTS] not found 'mug'")
    assert found.to_dict()["weights_tag"] == "[SYNTHETIC-WORLD WEIGHTS]"
    assert NotFound("mug", "x", random_weights=True).to_dict()["weights_tag"] == "[RANDOM WEIGHTS]"
    assert summary(Detection("mug", (0.0, 0.0, 1.0, 1.0), 0.9, None), 0.1).startswith("found")
