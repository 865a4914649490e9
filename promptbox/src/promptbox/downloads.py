"""Downloads of the released checkpoints into the weights directory, and `promptbox weights fetch`: only when no
offline flag is set and the network answers within seconds."""

from __future__ import annotations

import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

from promptbox.errors import WeightsError
from promptbox.weight_locations import (
    SAM_FILENAME,
    SAM_NAME,
    ClipTarget,
    clip_dir_problem,
    find_clip,
    find_sam,
    hub_dirname,
    offline_reason,
    resolve_clip_id,
    weights_dir,
)
from promptbox.weights import (
    DEFAULT_SAM_URL,
    OFFICIAL_SAM_SHA256,
    SAM_SHA256_ENV,
    SAM_URL_ENV,
    _check_sha256,
    _selection,
)

NETWORK_PROBE_TIMEOUT_S = 5.0  # offline machines must fail in seconds, not minutes
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation once connected


def _require_network(url: str) -> None:
    """Fail in seconds when the host (or the configured proxy) does not answer."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY")
    parsed = urllib.parse.urlparse(proxy if proxy else url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme in ("https", "") else 80)
    try:
        socket.create_connection((host, port), timeout=NETWORK_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise WeightsError(
            f"no network: {host}:{port} did not answer within {NETWORK_PROBE_TIMEOUT_S:.0f} s ({error})"
        ) from error


def download_sam(
    url: str | None = None, destination: str | os.PathLike | None = None, sha256: str | None = None
) -> Path:
    """Download mobile_sam.pt (default: $PROMPTBOX_SAM_URL or the official URL) into the weights directory."""
    reason = offline_reason()
    if reason:
        raise WeightsError(f"not downloading {SAM_FILENAME}: {reason} is set (unset it on a networked machine)")
    url = url or os.environ.get(SAM_URL_ENV) or DEFAULT_SAM_URL
    destination = Path(destination) if destination else weights_dir() / SAM_FILENAME
    expected = sha256 or os.environ.get(SAM_SHA256_ENV) or (OFFICIAL_SAM_SHA256 if url == DEFAULT_SAM_URL else None)
    _require_network(url)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        _check_sha256(partial, expected)
    except WeightsError:
        partial.unlink(missing_ok=True)
        raise
    except (OSError, urllib.error.URLError) as error:
        partial.unlink(missing_ok=True)
        raise WeightsError(f"download of {url} failed: {error}") from error
    partial.replace(destination)  # only a complete, checked file ever carries the real name
    return destination


def download_sam_into_weights_dir(looked: list[str]) -> Path | None:
    reason = offline_reason()
    if reason:
        looked.append(f"download: skipped, {reason}")
        return None
    try:
        return download_sam()
    except WeightsError as error:
        looked.append(f"download: {error}")
        return None


def _pick_weight_file(hf_id: str) -> str:
    from huggingface_hub import list_repo_files

    files = set(list_repo_files(hf_id))
    for name in ("model.safetensors", "pytorch_model.bin"):
        if name in files:
            return name
    raise WeightsError(f"{hf_id} on the Hub has neither model.safetensors nor pytorch_model.bin")


def download_clip(name_or_id: str, destination: str | os.PathLike | None = None) -> Path:
    """snapshot_download a CLIP model's config, tokenizer and one weights file into the weights directory."""
    reason = offline_reason()
    if reason:
        raise WeightsError(f"not downloading {name_or_id}: {reason} is set (unset it on a networked machine)")
    hf_id = resolve_clip_id(name_or_id)
    destination = Path(destination) if destination else weights_dir() / hub_dirname(hf_id)
    from huggingface_hub import constants, snapshot_download

    _require_network(constants.ENDPOINT)
    try:
        # One weights format only: the openai repo also holds pytorch, TF and Flax copies (GBs).
        patterns = ["*.json", "merges.txt", _pick_weight_file(hf_id)]
        snapshot_download(hf_id, local_dir=destination, allow_patterns=patterns, etag_timeout=DOWNLOAD_TIMEOUT_S)
    except WeightsError:
        raise
    except Exception as error:
        raise WeightsError(f"download of {hf_id} failed: {type(error).__name__}: {error}") from error
    problem = clip_dir_problem(destination)
    if problem:
        raise WeightsError(f"download of {hf_id} into {destination} is incomplete: {problem}")
    return destination


def download_clip_into_weights_dir(target: ClipTarget, looked: list[str]) -> Path | None:
    reason = offline_reason()
    if reason:
        looked.append(f"download: skipped, {reason}")
        return None
    try:
        return download_clip(target.hf_id or "")
    except WeightsError as error:
        looked.append(f"download: {error}")
        return None


def fetch(names: Iterable[str] | None = None) -> Iterator[str]:
    """Download what is missing into the weights directory, yielding one progress line per model (iterate it).
    `names` as in `check`. Raises WeightsError when offline or a download fails."""
    for name in _selection(names):
        if name == SAM_NAME:
            path, _ = find_sam()
            if path is not None:
                yield f"{name}: already present at {path}"
                continue
            yield f"{name}: downloading {os.environ.get(SAM_URL_ENV) or DEFAULT_SAM_URL} ..."
            yield f"{name}: saved to {download_sam()}"
            continue
        directory, _ = find_clip(name)
        if directory is not None:
            yield f"{name}: already present at {directory}"
            continue
        yield f"{name}: downloading {resolve_clip_id(name)} ..."
        yield f"{name}: saved to {download_clip(name)}"
