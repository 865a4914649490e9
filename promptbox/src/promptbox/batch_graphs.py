"""Batched forwards as CUDA graphs: one replay instead of ~100 kernel launches a batch.

On a GPU, a batch of 64 point prompts through the point embedding, the two-way transformer and the IoU head of
MobileSAM's mask decoder is about 2 ms of kernels, and a batch of region crops through CLIP's image tower less, but
launching the kernels one by one from Python takes longer than running them, and a frame needs several batches. A
CUDA graph records the launches once, for a fixed batch size and fixed input buffers; each batch then copies its
inputs (and, once per frame, what every batch of the frame shares, such as the decoder's image side) into those
buffers and replays. The kernels are the eager ones, so the results are eager's (tests/test_batch_graphs.py compares
them).

A capture must not run beside other CUDA work on the same device (work on the default stream from another thread
fails the capture): the Locator's lock serialises every model call, the ROS node's background embedding included.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import fields

import torch

# Batch sizes a graph is captured for: a batch is padded up to the next one, so fast mode's handful of prompts does
# not pay for a full batch, and a few graphs cover every size.
# Larger batches (points_per_batch above 64) run eagerly: a graph holds its batch's activations (3 MB a prompt).
SIZES = (8, 16, 32, 64)

# (shared, batch) -> outputs. `shared`: a dataclass of what every batch of a frame shares, or None.
Forward = Callable[[object, torch.Tensor], tuple[torch.Tensor, ...]]


class BatchGraphs:
    """Captured graphs of one model's batched forward, keyed by the caller's key (what `forward` depends on besides
    its inputs) and the padded batch size, sharing one memory pool."""

    def __init__(self, device: str) -> None:
        self._device = device
        self._pool = None
        self._graphs: dict[tuple, _Captured] = {}

    def run(self, shared, batch: torch.Tensor, key: tuple, forward: Forward) -> tuple[torch.Tensor, ...]:
        """forward(shared, batch)'s outputs for `batch` ((n, ...) on the GPU: point prompts, crops), from a replay of
        the graph captured for `key` at n's padded size (captured on first use). Valid until the next run."""
        size = next((s for s in SIZES if s >= len(batch)), None)
        if size is None:
            return forward(shared, batch)
        full_key = (*key, size)
        captured = self._graphs.get(full_key)
        if captured is None:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            captured = self._graphs[full_key] = _Captured(forward, shared, batch, size, self._device, self._pool)
        return captured.run(shared, batch)


class _Captured:
    def __init__(self, forward: Forward, shared, batch: torch.Tensor, size: int, device: str, pool) -> None:
        # Static copies of every tensor of the shared side; other fields (the grid) are kept as they are.
        self.shared = None if shared is None else type(shared)(**{
            f.name: getattr(shared, f.name).clone() if isinstance(getattr(shared, f.name), torch.Tensor)
            else getattr(shared, f.name) for f in fields(shared)
        })
        self.batch = batch[:1].expand(size, *batch.shape[1:]).clone()
        self.loaded: weakref.ref | None = None
        # torch.cuda.graphs' recipe: warm up on a side stream (lazy initialisation is not capturable), then capture.
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                forward(self.shared, self.batch)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.outputs = forward(self.shared, self.batch)

    def run(self, shared, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if shared is not None and (self.loaded is None or self.loaded() is not shared):  # a new frame's side
            for f in fields(shared):
                value = getattr(shared, f.name)
                if isinstance(value, torch.Tensor):
                    getattr(self.shared, f.name).copy_(value)
            self.loaded = weakref.ref(shared)
        n = len(batch)
        self.batch[:n].copy_(batch)
        self.batch[n:].copy_(batch[:1].expand(len(self.batch) - n, *batch.shape[1:]))  # padding, discarded
        self.graph.replay()
        return tuple(out[:n] for out in self.outputs)
