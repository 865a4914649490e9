"""Exact mode's masks of one frame, decoded coarse to fine only as far as a goal needed, and kept for the frame's
later goals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from promptbox.proposals import Proposals


class GridStages:
    """The proposals after each coarse-to-fine stage of one frame's grid (MaskProposer.propose_stages). Fast mode's
    fallback stops at the first stage whose masks answer; a later goal on the frame replays the stages decoded
    before (at no decoding cost, and so to the same answer it would get on a fresh frame) and goes on from there.
    The last stage is exact mode's proposals. Not thread-safe; the Locator serialises calls."""

    def __init__(self, stages: Iterator[Proposals]) -> None:
        self._decoded: list[Proposals] = []
        self._rest: Iterator[Proposals] | None = stages

    @property
    def complete(self) -> bool:
        """Every stage is decoded."""
        return self._rest is None

    def __iter__(self) -> Iterator[Proposals]:
        """Every stage in order: those decoded before with timings {"cached": 0.0}, then newly decoded ones (their
        timings are the grid's so far)."""
        for earlier in list(self._decoded):
            yield replace(earlier, timings_ms={"cached": 0.0})
        while self._rest is not None:
            stage = next(self._rest, None)
            if stage is None:
                self._rest = None
                return
            self._decoded.append(stage)
            yield stage

    def close(self) -> None:
        """Stop decoding for good: the decoder's generator holds the frame, and the frame holds this, a cycle that
        only the garbage collector would free. The Locator closes the stages of frames leaving its cache, and
        drops them, so a later goal on such a frame starts afresh."""
        if self._rest is not None:
            self._rest.close()
            self._rest = None

    def final(self) -> Proposals:
        """The last stage's proposals (exact mode's), decoding what is left."""
        *_, last = self
        return last
