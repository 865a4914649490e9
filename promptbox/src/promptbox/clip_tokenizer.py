"""CLIP's tokenizer without the network: the Hugging Face vocab.json + merges.txt derived from open_clip_torch's
bundled `bpe_simple_vocab_16e6.txt.gz`, the way CLIP derives its vocabulary."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

from promptbox.errors import WeightsError


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte -> printable unicode character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _bpe_vocab_path() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("open_clip_torch is not installed; it provides CLIP's BPE vocabulary for random weights")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise WeightsError(f"CLIP's BPE vocabulary is missing from open_clip_torch: {path}")
    return path


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], tuple[str, ...]]:
    """(vocab, merges) of CLIP's tokenizer, derived from open_clip's bpe_simple_vocab_16e6.txt.gz as CLIP does."""
    lines = gzip.open(_bpe_vocab_path()).read().decode("utf-8").split("\n")
    merges = tuple(lines[1 : 49152 - 256 - 2 + 1])  # line 0 is a version header; 48894 merges
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def write_clip_vocab_files(directory: str | os.PathLike) -> None:
    """vocab.json + merges.txt, the slow-tokenizer files of the CLIP Hub repos."""
    vocab, merges = clip_vocabulary()
    directory = Path(directory)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def offline_clip_tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer built without the network (from the files `write_clip_vocab_files` writes)."""
    with tempfile.TemporaryDirectory(prefix="promptbox-clip-vocab-") as scratch:
        write_clip_vocab_files(scratch)
        return CLIPTokenizer.from_pretrained(scratch, local_files_only=True)
