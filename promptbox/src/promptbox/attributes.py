"""A colour phrase is two questions: is the region the thing ("mug", against other object names), and is it that
colour ("green mug", against the mug's other colours)?

Asked as one question ("green mug" against every object name and every other colour at once), the phrase's own text
embedding judged the class too, and one pooled share let two doubts pass as one: on the world, a whole frame of
table and objects read "orange scissors" at 0.58 in a scene without them, though asked only "scissors" it reads so at
0.52 and asked its colour among the scissors' colours at 0.86 (0.45 together). Split, names judge the class with
the class phrase, and colours judge the colour with the full phrase. The confidence is the product of the two
shares, the probability that the region is the thing and has the colour; it is never above the one-question share
when both questions have rivals, so it refuses more (the README quotes what that cost on the world). It does not
rescue a pair the CLIP never saw when its image tower reads the object as another class (the world CLIP takes a
green mug for an apple even when asked only "mug"): for that, the class question is also asked colour-blind
(colour_blind.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from promptbox import vocabulary
from promptbox.selection import PhraseScores, calibrate


@dataclass(frozen=True)
class ColourPhrase:
    """"green mug": the colour word, the phrase without it ("mug"), and the phrase with each other colour."""

    phrase: str
    colour: str
    thing: str
    variants: tuple[str, ...]


# The noun the parser gives "the red one" and "the thing on the left": no class to ask about, so such a phrase stays
# one question (Locator._score).
GENERIC_THING = "object"


def colour_phrase(phrase: str) -> ColourPhrase | None:
    """The phrase split into its colour words and the rest ("black and white mug": "black and white", "mug"), or
    None when it names no colour or nothing but colours ("red"). The variants replace the first run of colours."""
    words = phrase.lower().split()
    colours = {i for i, w in enumerate(words) if w in vocabulary.COLOUR_WORDS}
    # "and" between two colours belongs to the colour ("black and white"), not to the thing.
    colours |= {i for i, w in enumerate(words) if w == "and" and {i - 1, i + 1} <= colours}
    thing = [w for i, w in enumerate(words) if i not in colours]
    if not colours or not thing:
        return None
    colour = " ".join(w for i, w in enumerate(words) if i in colours)
    return ColourPhrase(phrase, colour, " ".join(thing), tuple(vocabulary.colour_variants(phrase)))


def split_negatives(colour: ColourPhrase, negatives: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(colour rivals, class rivals): "not the blue mug" for "red mug" is another colour of the same thing, so it
    competes in the colour question; "not the scissors" competes in the class question."""
    same_thing = tuple(n for n in negatives if (c := colour_phrase(n)) is not None and c.thing == colour.thing)
    return same_thing, tuple(n for n in negatives if n not in same_thing)


def colour_wins(similarity: np.ndarray, rival_similarity: np.ndarray) -> np.ndarray:
    """(N,) bool: the full phrase's cosine is at least every colour rival's (the colour question's top-1)."""
    return np.asarray(similarity) >= np.asarray(rival_similarity).max(axis=1)


def with_colour(thing: PhraseScores, colour: ColourPhrase, similarity: np.ndarray, rival_similarity: np.ndarray,
                rivals: tuple[str, ...], logit_scale: float) -> PhraseScores:
    """The colour phrase's scores from the thing's (`thing`, scored against object names and scenery) and the full
    phrase's raw cosine (`similarity`, (N,)) against its colour rivals (`rival_similarity`, (N, len(rivals))).

    confidence = the thing's share x the colour's share; top1 = the thing's name wins among names and the phrase
    wins among its colours; rival = the name a region reads as where the class fails, else its colour where that
    fails; similarity stays the full phrase's raw cosine (nested regions of one object compare it, see selection).
    """
    sim = np.asarray(similarity, dtype=np.float64)
    others = np.asarray(rival_similarity, dtype=np.float64)
    if others.shape != (len(sim), len(rivals)) or not rivals:
        raise ValueError(f"rival_similarity has shape {others.shape}; accepted: ({len(sim)}, {len(rivals)}), one "
                         f"column per colour rival, at least one")
    if thing.confidence.shape != sim.shape:
        raise ValueError(f"thing scores {thing.confidence.shape[0]} regions, similarity {sim.shape[0]}; accepted: "
                         f"the same regions")
    share = calibrate(sim, others, logit_scale)
    colour_top1 = colour_wins(sim, others)
    strongest = others.argmax(axis=1)

    def reads_as(i: int) -> str:
        if thing.rival and not thing.top1[i]:
            return thing.rival[i]  # not the thing: its name says more than its colour
        if not colour_top1[i] or not thing.rival:
            return rivals[strongest[i]]
        return thing.rival[i]

    rival = tuple(reads_as(i) for i in range(len(sim)))
    return PhraseScores(colour.phrase, sim, thing.confidence * share, thing.top1 & colour_top1, rival)
