"""weights.py and weight_locations.py: checkpoints in the upstream formats load through every resolution step;
missing, corrupt or mismatched ones fail with a WeightsError that names the file and the fix; random stand-ins only
when allowed."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

from promptbox import clip_tokenizer, downloads, stand_ins, weight_locations, weights
from promptbox.weight_locations import CLIP_MODELS
from promptbox.weights import CLIP_DIMS, WeightsError

FAKE_REVISION = "0123456789abcdef0123456789abcdef01234567"


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def link_tree(source: Path, target: Path) -> Path:
    """A directory of symlinks to `source`'s files: the checkpoint at another place without copying 460 MB."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        (target / item.name).symlink_to(item.resolve())
    return target


def fake_hf_cache(cache: Path, repo_id: str) -> Path:
    """The layout huggingface_hub keeps: models--org--name/{refs/main, snapshots/<revision>/}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(FAKE_REVISION)
    return repo / "snapshots" / FAKE_REVISION


@pytest.fixture
def forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)


@pytest.fixture(scope="module")
def clip8_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real-format CLIP directory (random TinyCLIP-8M, ~95 MB) to corrupt in tests."""
    return stand_ins.write_random_clip_checkpoint(tmp_path_factory.mktemp("clip8") / "tinyclip-8m", "tinyclip-8m")


# --- model dimensions -------------------------------------------------------------------------------------------


def test_clip_names_resolve_to_their_hub_ids() -> None:
    assert CLIP_MODELS == {
        "tinyclip-61m": "wkcn/TinyCLIP-ViT-61M-32-Text-29M-LAION400M",
        "tinyclip-8m": "wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M",
        "clip-b32": "openai/clip-vit-base-patch32",
    }
    for name, hf_id in CLIP_MODELS.items():
        assert weight_locations.resolve_clip_id(name) == hf_id
        assert weight_locations.resolve_clip_id(hf_id) == hf_id


def test_mobile_sam_vit_t_has_its_published_size(sam_model) -> None:
    assert n_params(sam_model) == pytest.approx(10.13e6, rel=0.01)


@pytest.mark.parametrize(
    ("name", "vision_params", "text_params"),
    # Vision towers: TinyCLIP's names give 61M / 8M, ViT-B/32 is 87.8M. Text towers without the token embedding
    # table, as TinyCLIP counts them: "Text-29M" is 28.7M, "Text-3M" 2.5M; CLIP's 12-layer text transformer 38.1M.
    [("tinyclip-61m", 61.4e6, 28.7e6), ("tinyclip-8m", 8.3e6, 2.52e6), ("clip-b32", 87.8e6, 38.1e6)],
)
def test_clip_specs_have_the_real_sizes(name: str, vision_params: float, text_params: float) -> None:
    with torch.device("meta"):  # shapes only, no memory or init time
        model = CLIPModel(CLIP_DIMS[name].config())
    vision = n_params(model.vision_model) + n_params(model.visual_projection)
    text = n_params(model.text_model) + n_params(model.text_projection)
    text -= model.text_model.embeddings.token_embedding.weight.numel()
    assert vision == pytest.approx(vision_params, rel=0.015)
    assert text == pytest.approx(text_params, rel=0.02)


def test_loaded_tinyclip_61m_has_real_dimensions(clip_bundle) -> None:
    model, _ = clip_bundle
    spec = CLIP_DIMS["tinyclip-61m"]
    assert n_params(model.vision_model) + n_params(model.visual_projection) == pytest.approx(61.4e6, rel=0.01)
    vision = model.config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size) == (640, 12, 32)
    assert model.config.text_config.num_hidden_layers == spec.text_layers
    assert model.config.projection_dim == 512
    assert not model.training


# --- formats ----------------------------------------------------------------------------------------------------


def test_random_checkpoints_are_written_in_the_upstream_formats(sam_checkpoint: Path, clip_dir: Path) -> None:
    state_dict = torch.load(sam_checkpoint, weights_only=True)
    assert isinstance(state_dict, dict) and "image_encoder.patch_embed.seq.0.c.weight" in state_dict
    names = {p.name for p in clip_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"} <= names
    assert "preprocessor_config.json" in names
    assert json.loads((clip_dir / "config.json").read_text())["model_type"] == "clip"


def test_offline_tokenizer_matches_open_clip() -> None:
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer()
    tokenizer = clip_tokenizer.offline_clip_tokenizer()
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    for text in ["a photo of a cat", "the head of the Screwdriver!", "pick up the red mug, it's left of the bowl"]:
        expected = [reference.sot_token_id, *reference.encode(text), reference.eot_token_id]
        assert tokenizer(text)["input_ids"] == expected
    assert len(tokenizer) == 49408


def test_random_stand_ins_are_deterministic(sam_checkpoint: Path) -> None:
    written, again = torch.load(sam_checkpoint, weights_only=True), stand_ins.random_sam_state_dict()
    assert all(torch.equal(written[k], again[k]) for k in written)


# --- MobileSAM --------------------------------------------------------------------------------------------------


def test_sam_loads_from_an_explicit_path(sam_model, sam_checkpoint: Path) -> None:
    expected = torch.load(sam_checkpoint, weights_only=True)
    loaded = sam_model.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert not sam_model.training


def test_sam_loads_from_the_weights_dir(no_weights: Path, sam_checkpoint: Path) -> None:
    (no_weights / "mobile_sam.pt").symlink_to(sam_checkpoint)
    model, is_random = weights.load_sam(None, "cpu", False)
    assert not is_random
    assert weight_locations.find_sam()[0] == no_weights / "mobile_sam.pt"


def test_sam_loads_from_the_hf_cache(no_weights: Path, sam_checkpoint: Path, tmp_path: Path) -> None:
    snapshot = fake_hf_cache(tmp_path / "hf-cache", weight_locations.SAM_HF_REPO)
    snapshot.mkdir(parents=True)
    (snapshot / "mobile_sam.pt").symlink_to(sam_checkpoint)
    path, looked = weight_locations.find_sam()
    assert path == snapshot / "mobile_sam.pt"
    assert str(no_weights / "mobile_sam.pt") in looked[0]


def test_missing_sam_names_the_file_the_places_and_the_fix(no_weights: Path, forbid_network) -> None:
    with pytest.raises(WeightsError) as error:
        weights.load_sam(None, "cpu", False)
    message = str(error.value)
    assert "mobile_sam.pt" in message and str(no_weights) in message
    assert "Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "PROMPTBOX_WEIGHTS_DIR" in message and "promptbox weights fetch" in message
    assert "--random-weights" in message


def test_missing_explicit_sam_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere" / "my_sam.pt"
    with pytest.raises(WeightsError, match="my_sam.pt"):
        weights.load_sam(str(missing), "cpu", False)


def test_allow_random_builds_a_random_sam_and_says_so(no_weights: Path, sam_checkpoint: Path, forbid_network) -> None:
    model, is_random = weights.load_sam(None, "cpu", True)
    assert is_random and not model.training
    reference = torch.load(sam_checkpoint, weights_only=True)  # the same seed-0 stand-in
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())


def test_allow_random_still_prefers_the_real_checkpoint(sam_checkpoint: Path) -> None:
    _, is_random = weights.load_sam(str(sam_checkpoint), "cpu", True)
    assert not is_random


def corrupted(sam_checkpoint: Path, tmp_path: Path, change) -> Path:
    state_dict = torch.load(sam_checkpoint, weights_only=True)
    change(state_dict)
    path = tmp_path / "mobile_sam.pt"
    torch.save(state_dict, path)
    return path


def test_sam_with_a_missing_key_is_rejected_by_name(sam_checkpoint: Path, tmp_path: Path) -> None:
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    path = corrupted(sam_checkpoint, tmp_path, lambda sd: sd.pop(key))
    with pytest.raises(WeightsError, match=r"missing keys: .*mask_decoder\.iou_prediction_head\.layers\.0\.weight"):
        weights.load_sam(str(path), "cpu", True)  # a broken real file is an error even when random is allowed


def test_sam_with_a_wrong_shape_is_rejected_by_name(sam_checkpoint: Path, tmp_path: Path) -> None:
    key = "prompt_encoder.point_embeddings.0.weight"
    path = corrupted(sam_checkpoint, tmp_path, lambda sd: sd.__setitem__(key, torch.zeros(1, 128)))
    with pytest.raises(WeightsError, match=r"shape mismatch: prompt_encoder\.point_embeddings\.0\.weight \(1, 128\)"):
        weights.load_sam(str(path), "cpu", False)


def test_sam_with_an_unexpected_key_is_rejected_by_name(sam_checkpoint: Path, tmp_path: Path) -> None:
    path = corrupted(sam_checkpoint, tmp_path, lambda sd: sd.__setitem__("extra.head.weight", torch.zeros(2)))
    with pytest.raises(WeightsError, match=r"unexpected keys: extra\.head\.weight"):
        weights.load_sam(str(path), "cpu", False)


def test_a_file_that_is_no_state_dict_is_rejected(tmp_path: Path) -> None:
    garbage = tmp_path / "mobile_sam.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="could not be read"):
        weights.load_sam(str(garbage), "cpu", False)
    torch.save([torch.zeros(1)], garbage)
    with pytest.raises(WeightsError, match="not a MobileSAM state_dict"):
        weights.load_sam(str(garbage), "cpu", False)


def test_sam_sha256_is_checked_when_configured(
    sam_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actual = weights._file_sha256(sam_checkpoint)
    _, is_random = weights.load_sam(str(sam_checkpoint), "cpu", False, sha256=actual.upper())
    assert not is_random
    with pytest.raises(WeightsError, match="sha256 .* does not match"):
        weights.load_sam(str(sam_checkpoint), "cpu", False, sha256="0" * 64)
    monkeypatch.setenv(weights.SAM_SHA256_ENV, "f" * 64)
    with pytest.raises(WeightsError, match="PROMPTBOX_SAM_SHA256"):
        weights.load_sam(str(sam_checkpoint), "cpu", False)


# --- CLIP -------------------------------------------------------------------------------------------------------


def test_clip_loads_from_an_explicit_directory(clip_bundle) -> None:
    model, tokenizer = clip_bundle
    assert tokenizer("a photo of a cat")["input_ids"][:2] == [49406, 320]
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("layout", ["tinyclip-61m", "wkcn--TinyCLIP-ViT-61M-32-Text-29M-LAION400M"])
def test_clip_is_found_in_the_weights_dir(no_weights: Path, clip_dir: Path, layout: str) -> None:
    link_tree(clip_dir, no_weights / layout)
    for name in ("tinyclip-61m", "wkcn/TinyCLIP-ViT-61M-32-Text-29M-LAION400M"):
        assert weight_locations.find_clip(name)[0] == no_weights / layout


def test_clip_loads_through_the_weights_dir(no_weights: Path, clip8_dir: Path) -> None:
    link_tree(clip8_dir, no_weights / "wkcn--TinyCLIP-ViT-8M-16-Text-3M-YFCC15M")
    model, tokenizer, is_random = weights.load_clip("tinyclip-8m", "cpu", False)
    assert not is_random and model.config.vision_config.hidden_size == 256
    assert len(tokenizer) == 49408


def test_clip_is_found_in_the_hf_cache(no_weights: Path, clip_dir: Path, tmp_path: Path) -> None:
    snapshot = fake_hf_cache(tmp_path / "hf-cache", CLIP_MODELS["tinyclip-61m"])
    link_tree(clip_dir, snapshot)
    assert weight_locations.find_clip("tinyclip-61m")[0] == snapshot


def test_missing_clip_names_the_id_the_places_and_the_fix(no_weights: Path, forbid_network) -> None:
    with pytest.raises(WeightsError) as error:
        weights.load_clip("tinyclip-61m", "cpu", False)
    message = str(error.value)
    assert "wkcn/TinyCLIP-ViT-61M-32-Text-29M-LAION400M" in message
    assert str(no_weights / "wkcn--TinyCLIP-ViT-61M-32-Text-29M-LAION400M") in message
    assert "Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "promptbox weights fetch" in message and "--random-weights" in message


def test_allow_random_builds_a_random_clip_with_real_dims(no_weights: Path, forbid_network) -> None:
    model, tokenizer, is_random = weights.load_clip("tinyclip-8m", "cpu", True)
    assert is_random and not model.training
    vision = model.config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size) == (256, 10, 16)
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_random_clip_needs_a_known_name(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="only for the known names"):
        weights.load_clip(str(tmp_path / "my-clip"), "cpu", True)


def test_unknown_clip_name_is_rejected() -> None:
    with pytest.raises(WeightsError, match="tinyclip-61m"):
        weights.load_clip("tinyclip", "cpu", True)


def test_a_non_clip_config_is_rejected_naming_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "bert"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (directory / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"bert.*model_type='bert'"):
        weights.load_clip(str(directory), "cpu", False)


def test_clip_weights_missing_a_tensor_are_rejected(clip8_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(clip8_dir, broken)
    tensors = load_file(broken / "model.safetensors")
    del tensors["text_model.final_layer_norm.weight"]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"broken.*text_model\.final_layer_norm\.weight"):
        weights.load_clip(str(broken), "cpu", False)


def test_clip_without_tokenizer_files_is_rejected(clip8_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "no-tokenizer"
    directory.mkdir()
    for name in ("config.json", "model.safetensors"):
        (directory / name).symlink_to(clip8_dir / name)
    with pytest.raises(WeightsError, match="no-tokenizer"):
        weights.load_clip(str(directory), "cpu", False)


# --- check, fetch, downloads ------------------------------------------------------------------------------------


def test_check_reports_found_and_missing(
    no_weights: Path, sam_checkpoint: Path, clip_dir: Path, forbid_network
) -> None:
    records = {r.name: r for r in weights.check(["all"])}
    assert list(records) == ["mobile_sam", "tinyclip-61m", "tinyclip-8m", "clip-b32"]
    assert not any(r.found for r in records.values())
    assert "mobile_sam.pt" in records["mobile_sam"].detail

    (no_weights / "mobile_sam.pt").symlink_to(sam_checkpoint)
    link_tree(clip_dir, no_weights / "tinyclip-61m")
    records = {r.name: r for r in weights.check(None)}  # default: mobile_sam + the default CLIP model
    assert list(records) == ["mobile_sam", "tinyclip-61m"]
    assert records["mobile_sam"].found and records["mobile_sam"].where == str(no_weights / "mobile_sam.pt")
    assert records["tinyclip-61m"].found and records["tinyclip-61m"].where == str(no_weights / "tinyclip-61m")
    assert not weights.check(["clip-b32"])[1].found


def test_check_reports_a_sha256_mismatch(no_weights: Path, sam_checkpoint: Path, monkeypatch) -> None:
    (no_weights / "mobile_sam.pt").symlink_to(sam_checkpoint)
    monkeypatch.setenv(weights.SAM_SHA256_ENV, "0" * 64)
    record = weights.check()[0]
    assert not record.found and "does not match" in record.detail


@pytest.mark.parametrize("flag", weight_locations.OFFLINE_ENVS)
def test_offline_flags_prevent_any_network_attempt(
    no_weights: Path, forbid_network, monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    for name in weight_locations.OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(flag, "1")
    with pytest.raises(WeightsError, match=flag):
        list(downloads.fetch())
    with pytest.raises(WeightsError, match=f"download: skipped, {flag}"):
        weights.load_sam(None, "cpu", False)


def test_without_network_downloads_fail_fast_and_clearly(no_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline flags unset, but no host answers: the probe fails at once (no real connection is made here)."""
    for name in weight_locations.OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)

    def unreachable(address, timeout=None, *args, **kwargs):
        assert timeout is not None and timeout <= 10
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("urlopen after a failed probe"))
    with pytest.raises(WeightsError, match=r"download: no network: github\.com:443"):
        weights.load_sam(None, "cpu", False)
    with pytest.raises(WeightsError, match=r"no network: huggingface\.co:443"):
        downloads.download_clip("tinyclip-8m")
    assert not any(os.scandir(no_weights))  # nothing half-written
