"""Random-init stand-ins for the real checkpoints, for plumbing checks and tests: the real architectures with seeded
weights, going through the same state_dict checks and loaders as real checkpoints, and writers of the upstream
file formats."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from promptbox.clip_tokenizer import offline_clip_tokenizer, write_clip_vocab_files
from promptbox.errors import WeightsError
from promptbox.weight_locations import DEFAULT_CLIP, SAM_FILENAME
from promptbox.weights import CLIP_DIMS, RANDOM_SEED, _new_vit_t


def random_sam_state_dict(seed: int = RANDOM_SEED) -> dict[str, torch.Tensor]:
    """The state_dict of a freshly initialised vit_t MobileSAM, the same for the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _new_vit_t().state_dict()


def write_random_sam_checkpoint(path: str | os.PathLike, seed: int = RANDOM_SEED) -> Path:
    """torch.save a random vit_t state_dict: the format of the official mobile_sam.pt (a directory gets one)."""
    path = Path(path)
    if path.is_dir():
        path = path / SAM_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_sam_state_dict(seed), path)
    return path


def random_clip(name: str = DEFAULT_CLIP, seed: int = RANDOM_SEED) -> tuple[CLIPModel, CLIPTokenizer]:
    """A freshly initialised CLIPModel with the named model's real dimensions, and CLIP's real tokenizer."""
    if name not in CLIP_DIMS:
        raise WeightsError(f"no dimensions known for CLIP model {name!r}; known: {', '.join(CLIP_DIMS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(CLIP_DIMS[name].config())
    return model.eval(), offline_clip_tokenizer()


def write_random_clip_checkpoint(
    directory: str | os.PathLike, name: str = DEFAULT_CLIP, seed: int = RANDOM_SEED
) -> Path:
    """Write a random `name` model as the Hub repos hold it: config.json, model.safetensors, tokenizer and
    preprocessor files. Returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model, tokenizer = random_clip(name, seed)
    model.save_pretrained(directory, safe_serialization=True)
    write_clip_vocab_files(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": CLIP_DIMS[name].image_size}).save_pretrained(directory)
    return directory
