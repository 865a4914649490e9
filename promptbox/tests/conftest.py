"""Session fixtures shared by the core tests: random-init checkpoints written in the real upstream formats, loaded
once through the real loaders. No test downloads anything: the offline flags are set before any Hub library
reads them."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from promptbox import stand_ins, weight_locations, weights  # noqa: E402
from promptbox.matching import Matcher  # noqa: E402

# The test machine has 2 cores; more threads than cores only adds contention. Fixed seed for reproducible tests.
torch.set_num_threads(min(2, os.cpu_count() or 1))
torch.manual_seed(0)

TEST_CLIP = "tinyclip-61m"  # the default model, at its real dimensions
WORLD_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "world"  # committed, synthetic-world


@pytest.fixture(scope="session")
def sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random vit_t mobile_sam.pt (torch.save'd state_dict, like the official file)."""
    return stand_ins.write_random_sam_checkpoint(tmp_path_factory.mktemp("sam") / weight_locations.SAM_FILENAME)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face directory of a random TinyCLIP-61M (real dimensions, real tokenizer), ~460 MB."""
    return stand_ins.write_random_clip_checkpoint(tmp_path_factory.mktemp("clip") / TEST_CLIP, TEST_CLIP)


@pytest.fixture(scope="session")
def sam_model(sam_checkpoint: Path):
    """The MobileSAM of `sam_checkpoint`, loaded by weights.load_sam (eval, cpu)."""
    model, is_random = weights.load_sam(str(sam_checkpoint), "cpu", False)
    assert not is_random
    return model


@pytest.fixture(scope="session")
def clip_bundle(clip_dir: Path):
    """(CLIPModel, tokenizer) of `clip_dir`, loaded by weights.load_clip (eval, cpu)."""
    model, tokenizer, is_random = weights.load_clip(str(clip_dir), "cpu", False)
    assert not is_random
    return model, tokenizer


@pytest.fixture(scope="session")
def matcher(clip_bundle) -> Matcher:
    model, tokenizer = clip_bundle
    return Matcher(model, tokenizer, "cpu")


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment where no real checkpoint can be found: an empty weights dir and an empty HF cache.
    Returns the weights dir."""
    import huggingface_hub.constants

    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setenv(weight_locations.WEIGHTS_DIR_ENV, str(empty))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv(weights.SAM_SHA256_ENV, raising=False)
    monkeypatch.delenv(weights.SAM_URL_ENV, raising=False)
    return empty


@pytest.fixture(scope="module")
def world_locator():
    """A fast-mode Locator on the committed synthetic-world weights (world MobileSAM and CLIP); one per test module,
    since tests fill and clear its frame cache."""
    from promptbox.config import LocatorConfig
    from promptbox.locator import Locator

    return Locator(LocatorConfig(sam_checkpoint=str(WORLD_WEIGHTS / "mobile_sam.pt"),
                                 clip_model=str(WORLD_WEIGHTS / "world-clip"), mode="fast"))
