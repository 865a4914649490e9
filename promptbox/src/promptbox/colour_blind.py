"""The class question, also asked colour-blind.

A CLIP's image tower reads colour with class, and an object in a colour it rarely saw with that class can read as
an object that has that colour (the world CLIP takes a green mug for an apple, asked "green mug", "mug" or "the body
of the mug"). So the class question is also asked on the region's crop with the frame's colour channels turned
(R, G, B -> B, R, G and G, B, R, which in HSV is the hue turned by exactly 120 and 240 degrees, with saturation and
value unchanged): the shape in colours the model has seen the class in. A region keeps the more confident of its
plain and colour-blind readings: the turns never hide a class its own colours show (a yellow banana).

How much the colour-blind reading may claim depends on what else guards the answer:

- A colour phrase ("the green mug") is two questions (attributes.py), and the colour question still sees only the
  region's own colours: a red mug stays refused. So the colour-blind reading is lenient, the embedding averaged over
  the three hues, and asked on the regions whose colour the colour question names.
- A phrase without a colour ("the mug", a part's whole) has no such guard, and colour is evidence too (a yellow apple
  is not a ball). So the class must hold in each turned hue on its own (the least confident turned reading), and it
  is asked only where it can be about colour and the class is already in the running: regions with a hue to turn
  (CHROMATIC), on which the plain reading has the phrase among its RANKED best names. That also bounds the cost.

The turned crops cost one more call of the image tower over those regions in both turns (a call's cost is mostly
fixed on a CPU), once per region however many phrases ask (the target, a part's whole, a relation's anchor).
"""

from __future__ import annotations

import numpy as np
import torch

from promptbox.masks import BoxMasks
from promptbox.matching import Matcher
from promptbox.selection import PhraseScores

# Channel turns beside the frame as it is (turn 0); Matcher.encode_turned crops the turned frames.
TURNS: tuple[int, ...] = (1, 2)
# A phrase without a colour is read colour-blind on the regions where the plain reading ranks it among this many
# best names (0: its top-1): colour moves a class a few places, it does not make one out of nothing.
RANKED = 3
# The mean chroma (max - min of R, G, B, in [0, 1]) below which a region is grey, white or black: its hue is
# undefined, turning it changes only its surroundings, so a colour-blind reading of it says nothing about colour.
CHROMATIC = 0.15


def averaged(plain: torch.Tensor, turned: list[torch.Tensor]) -> torch.Tensor:
    """The L2-normalised mean of `plain` and the `turned` views of the same regions, in plain's dtype."""
    mean = torch.stack([plain.float(), *(view.float() for view in turned)]).mean(dim=0)
    return (mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12)).to(plain.dtype)


def chroma(image: np.ndarray, masks: BoxMasks, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) the mean chroma of each region's pixels: max minus min of its R, G, B, in [0, 1]."""
    out = np.zeros(len(rows), np.float64)
    for k, row in enumerate(np.asarray(rows, np.int64)):
        left, top, right, bottom = (int(v) for v in masks.boxes[row])
        pixels = image[top:bottom, left:right][masks.window(int(row), top, bottom, left, right)].astype(np.int16)
        if pixels.size:
            out[k] = float((pixels.max(axis=1) - pixels.min(axis=1)).mean()) / 255.0
    return out


def in_each_hue(turned: list[PhraseScores]) -> PhraseScores:
    """One reading from the readings of the same regions in each turned hue: the least confident one's confidence
    and name, and top-1 only where the phrase is top-1 in every hue."""
    if not turned:
        raise ValueError("no turned readings; accepted: one per turn")
    confidence = np.stack([s.confidence for s in turned])
    weakest = confidence.argmin(axis=0)
    rival = tuple(turned[w].rival[i] for i, w in enumerate(weakest)) if all(s.rival for s in turned) else ()
    return PhraseScores(turned[0].phrase, turned[0].similarity, confidence.min(axis=0),
                        np.logical_and.reduce([s.top1 for s in turned]), rival)


class ColourBlindRegions:
    """The turned crops of one matching's regions, each computed once however many phrases ask (the target, a
    part's whole, a relation's anchor)."""

    def __init__(self, matcher: Matcher, image: np.ndarray, boxes: np.ndarray, masks: BoxMasks,
                 plain: torch.Tensor) -> None:
        self._matcher, self._image, self._boxes, self._masks, self._plain = matcher, image, boxes, masks, plain
        self._done: dict[int, list[torch.Tensor]] = {}  # row -> its embedding in each of TURNS

    def turned(self, rows: np.ndarray) -> list[torch.Tensor]:
        """Per turn in TURNS, the (len(rows), D) embeddings of the regions at `rows` in the turned frame."""
        todo = np.array([r for r in dict.fromkeys(int(r) for r in rows) if r not in self._done], np.int64)
        if todo.size:
            found = self._matcher.encode_turned(self._image, self._boxes[todo], self._masks[todo], TURNS)
            self._done.update((r, [view[k] for view in found]) for k, r in enumerate(todo.tolist()))
        return [torch.stack([self._done[int(r)][t] for r in rows]) for t in range(len(TURNS))]

    def embeddings(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), D) the averaged colour-blind embeddings of the regions at `rows` (a colour phrase's)."""
        rows = np.asarray(rows, np.int64)
        return averaged(self._plain[rows], self.turned(rows))

    def chromatic(self, rows: np.ndarray) -> np.ndarray:
        """The `rows` whose regions have a hue to turn (mean chroma at least CHROMATIC)."""
        rows = np.asarray(rows, np.int64)
        return rows[chroma(self._image, self._masks, rows) >= CHROMATIC]


def either(plain: PhraseScores, blind: PhraseScores, rows: np.ndarray) -> PhraseScores:
    """`plain` with, at `rows` (blind's regions, in order), the colour-blind reading where it is the more confident:
    its confidence and the name it reads as; the phrase is top-1 where either reading makes it so. Similarity stays
    plain's (raw cosines are compared between nested regions, which must be read alike)."""
    rows = np.asarray(rows, dtype=np.int64)
    if blind.confidence.shape != rows.shape:
        raise ValueError(f"blind scores {blind.confidence.shape[0]} regions for {rows.shape[0]} rows; accepted: one "
                         f"per row")
    confidence = plain.confidence.copy()
    top1 = plain.top1.copy()
    rival = list(plain.rival)
    better = blind.confidence > plain.confidence[rows]
    confidence[rows] = np.maximum(plain.confidence[rows], blind.confidence)
    top1[rows] |= blind.top1
    if rival and blind.rival:
        for row, wins, name in zip(rows, better, blind.rival, strict=True):
            if wins:
                rival[row] = name
    return PhraseScores(plain.phrase, plain.similarity, confidence, top1, tuple(rival), plain.rank)
