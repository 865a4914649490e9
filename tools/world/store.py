"""Write trained world weights in the normal layouts (mobile_sam.pt, a Hugging Face CLIP directory), in fp16, with
a provenance file that makes promptbox tag every result made with them as synthetic-world weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from promptbox.provenance import PROVENANCE_SUFFIX, SYNTHETIC_WORLD, clip_provenance_path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_sam_fp16(sam, out_dir: Path, record: dict) -> Path:
    """out_dir/mobile_sam.pt: the vit_t state_dict with float tensors in fp16 (half the size; loads as float32)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "mobile_sam.pt"
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in sam.state_dict().items()}
    torch.save(state, path)
    provenance = {"weights": SYNTHETIC_WORLD, "file": path.name, "sha256": _sha256(path), "record": record}
    Path(f"{path}{PROVENANCE_SUFFIX}").write_text(json.dumps(provenance, indent=1) + "\n")
    return path


def save_clip_fp16(model, tokenizer, directory: Path, record: dict) -> Path:
    """A Hugging Face CLIP directory (config, fp16 safetensors, tokenizer files), as the Hub repos hold it."""
    from transformers import CLIPImageProcessor

    from promptbox.clip_tokenizer import write_clip_vocab_files

    directory.mkdir(parents=True, exist_ok=True)
    model.half().save_pretrained(directory, safe_serialization=True)
    model.float()
    write_clip_vocab_files(directory)
    tokenizer.save_pretrained(directory)
    # vocab.json + merges.txt are the whole tokenizer; the 3.6 MB tokenizer.json would only repeat them.
    (directory / "tokenizer.json").unlink(missing_ok=True)
    CLIPImageProcessor(size={"shortest_edge": model.config.vision_config.image_size},
                       crop_size=model.config.vision_config.image_size).save_pretrained(directory)
    weights_file = directory / "model.safetensors"
    provenance = {"weights": SYNTHETIC_WORLD, "file": weights_file.name, "sha256": _sha256(weights_file),
                  "record": record}
    clip_provenance_path(directory).write_text(json.dumps(provenance, indent=1) + "\n")
    return directory


def save_state(path: Path, model, optimizer, step: int, history: list) -> None:
    """A resumable training state: the next call continues with --resume."""
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "history": history}, path)


def resume(path: Path, model, optimizer) -> tuple[int, list]:
    """(step, history) of a saved state, loaded into model and optimizer; (0, []) when there is none."""
    if not path.exists():
        return 0, []
    saved = torch.load(path, weights_only=False)  # our own file: optimizer state holds plain Python objects
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    print(f"[train] resumed at step {saved['step']}")
    return saved["step"], saved["history"]
