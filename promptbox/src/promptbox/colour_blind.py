"""The class question of a colour phrase, also asked colour-blind.

"the green mug" is two questions (attributes.py): is the region a mug, and is it green. The first should not depend on
the colour, since the second judges it; but a CLIP's image tower reads colour with class, and a mug in a colour it
rarely saw with mugs can read as an object that has that colour (the world CLIP takes a green mug for an apple). So
the class question is also asked on the region's embedding averaged over three hues a third of the colour wheel apart:
the frame as it is and with its colour channels turned (R, G, B -> B, R, G and G, B, R, which in HSV is the hue turned
by exactly 120 and 240 degrees, with saturation and value unchanged). The average reads the shape in colours the model
has seen the class in. A region keeps the higher of its two readings: the turns never hide a class its own colours
show (a yellow banana).

The colour question still sees only the region's own colours, so a red mug asked as "the green mug" stays refused.
The turned readings cost two passes of the image tower over the regions whose colour the colour question names,
and only for colour phrases with a class.
"""

from __future__ import annotations

import numpy as np
import torch

from promptbox.masks import BoxMasks
from promptbox.matching import Matcher
from promptbox.selection import PhraseScores

# Channel turns beside the frame as it is (turn 0); Matcher.encode_regions(turn=t) crops the turned frame.
TURNS: tuple[int, ...] = (1, 2)


def embeddings(matcher: Matcher, image: np.ndarray, boxes: np.ndarray, masks: BoxMasks,
               plain: torch.Tensor) -> torch.Tensor:
    """(N, D) colour-blind embeddings of the regions `boxes` / `masks`: the L2-normalised mean of `plain` (their
    embeddings as they are) and their embeddings in each of TURNS."""
    views = [plain.float(), *(matcher.encode_regions(image, boxes, masks, turn=t).float() for t in TURNS)]
    mean = torch.stack(views).mean(dim=0)
    return (mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12)).to(plain.dtype)


class ColourBlindRegions:
    """The colour-blind embeddings of one matching's regions, each computed once however many phrases ask (the
    target, a part's whole, a relation's anchor)."""

    def __init__(self, matcher: Matcher, image: np.ndarray, boxes: np.ndarray, masks: BoxMasks,
                 plain: torch.Tensor) -> None:
        self._matcher, self._image, self._boxes, self._masks, self._plain = matcher, image, boxes, masks, plain
        self._done: dict[int, torch.Tensor] = {}

    def embeddings(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), D) the colour-blind embeddings of the regions at `rows`."""
        todo = np.array([r for r in dict.fromkeys(int(r) for r in rows) if r not in self._done], np.int64)
        if todo.size:
            found = embeddings(self._matcher, self._image, self._boxes[todo], self._masks[todo], self._plain[todo])
            self._done.update(zip(todo.tolist(), found, strict=True))
        return torch.stack([self._done[int(r)] for r in rows])


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
    return PhraseScores(plain.phrase, plain.similarity, confidence, top1, tuple(rival))
