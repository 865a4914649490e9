"""Exact mode's masks of one frame, decoded coarse to fine only as far as a goal needed, and kept for the frame's
later goals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from promptbox.proposals import Proposals


class GridStages:
    """The proposals after each coarse-to-fine stage of one frame's grid (MaskProposer.grid_stages), each decoded
    and post-processed only when some caller first asks for it. Fast mode's fallback stops at the first stage whose
    masks answer; a later goal on the frame replays the stages it reached (at no cost, and so to the answer it would
    get on a fresh frame) and goes on from there. The last stage is exact mode's proposals, and exact mode asks for
    that one only. Not thread-safe; the Locator serialises calls."""

    def __init__(self, stages: Iterator[Callable[[], Proposals]]) -> None:
        self._stages: list[Callable[[], Proposals]] = []  # decoded: each post-processes its masks when called
        self._finished: dict[int, Proposals] = {}
        self._rest: Iterator[Callable[[], Proposals]] | None = stages

    @property
    def complete(self) -> bool:
        """Every stage is decoded."""
        return self._rest is None

    @property
    def decoded(self) -> int:
        """How many stages are decoded so far."""
        return len(self._stages)

    def __iter__(self) -> Iterator[Proposals]:
        """Every stage in order. One post-processed before comes with timings {"cached": 0.0}; a new one with the
        grid's decoding so far and its own post-processing."""
        index = 0
        while self._pull(index):
            yield self._proposals(index)
            index += 1

    def close(self) -> None:
        """Stop decoding for good: the decoder's generator holds the frame, and the frame holds this, a cycle that
        only the garbage collector would free. The Locator closes the stages of frames leaving its cache, and
        drops them, so a later goal on such a frame starts afresh."""
        if self._rest is not None:
            self._rest.close()
            self._rest = None

    def final(self) -> Proposals:
        """The last stage's proposals (exact mode's), decoding what is left; no other stage is post-processed."""
        while self._pull(len(self._stages)):
            pass
        return self._proposals(len(self._stages) - 1)

    def _pull(self, index: int) -> bool:
        """Decode up to stage `index`; False when the grid has no such stage."""
        while len(self._stages) <= index and self._rest is not None:
            stage = next(self._rest, None)
            if stage is None:
                self._rest = None
            else:
                self._stages.append(stage)
        return index < len(self._stages)

    def _proposals(self, index: int) -> Proposals:
        if index in self._finished:
            return replace(self._finished[index], timings_ms={"cached": 0.0})
        self._finished[index] = self._stages[index]()
        return self._finished[index]
