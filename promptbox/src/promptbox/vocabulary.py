"""The vocabulary a target phrase competes with: common names of household, kitchen, office and workshop objects.

Calibration asks "is this region the named thing rather than some other thing?", so a scissors crop asked as
"screwdriver" loses to "scissors". The names are common-noun categories of the kind LVIS and Objects365 list;
`competitors` leaves out the ones that would compete with the target itself (its own head noun, and names whose
text embedding is nearly the target's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_NAMES = """
apple, avocado, bagel, ball, balloon, banana, bandage, basket, battery, bell pepper, belt, bench, bicycle, binder,
binoculars, blanket, blender, block, book, bookend, bottle, bottle opener, bowl, box, bracelet, bread, broccoli,
broom, brush, bucket, cabbage, cake, calculator, calendar, camera, can, can opener, candle, cap, card,
cardboard box, carrot, chair, charger, cheese, chopsticks, clamp, clip, clipboard, clock, clothespin, coaster,
coffee maker, coin, colander, comb, computer mouse, container, cookie, cooking pot, corkscrew, cotton swab,
cucumber, cup, cupcake, cushion, cutting board, deodorant, desk lamp, dice, dish, dish soap, doll, donut, drill,
dumbbell, duster, earphones, egg, envelope, eraser, eyeglasses, fan, faucet, file folder, flashlight, flower,
flower pot, folder, fork, frying pan, funnel, game controller, garlic, glass, glove, glue stick, grapes, grater,
hair dryer, hairbrush, hammer, hand sanitizer, handbag, hanger, hard drive, hat, headphones, helmet,
highlighter, hook, hot sauce, jar, jug, kettle, key, keyboard, knife, ladle, laptop, lemon, lettuce, lid,
light bulb, lighter, lime, lipstick, lock, lollipop, magazine, magnet, marker, measuring cup, measuring tape,
microphone, microwave, milk carton, mirror, mitten, monitor, mop, mug, mushroom, nail, nail clippers, napkin,
necklace, needle, notebook, nut, onion, orange, oven mitt, padlock, paintbrush, paint can, pan, paper,
paper clip, paper towel, pear, peeler, pen, pencil, pencil case, pepper shaker, perfume, phone, photo frame,
pill bottle, pillow, pineapple, pitcher, plate, plant, pliers, plug, plunger, potato, power strip, printer,
purse, radio, razor, remote control, ring, rolling pin, rope, ruler, salt shaker, sandal, sandwich, saucer, saw,
scale, scarf, scissors, screw, screwdriver, shampoo, sharpener, shoe, shovel, slipper, soap, soap dispenser,
sock, soda can, spatula, speaker, sponge, spoon, spray bottle, stapler, sticky note, stool, strawberry, straw,
sunglasses, tablet, tape, teapot, teddy bear, telephone, thermos, thermometer, thread, tissue box, toaster,
toilet paper, tomato, tongs, toolbox, toothbrush, toothpaste, towel, toy, toy car, tray, trophy, tweezers,
umbrella, usb stick, vase, wallet, watch, water bottle, watering can, whisk, wine glass, wire, wrench, yogurt
"""

OBJECT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(n.strip() for n in _NAMES.replace("\n", " ").split(",")))

# Colour words CLIP reads reliably; an attribute phrase ("red mug") competes with its other colours ("blue mug").
COLOUR_WORDS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "black",
                                 "brown", "grey", "gray")
# Text-embedding cosine above which a name is a near-synonym of the target ("mug" for "coffee mug", "cup"), so it
# would split the target's own probability instead of competing with it. Measured after centring on the
# vocabulary's mean embedding: CLIP text towers put every name in a narrow cone (mean pairwise raw cosine 0.91 and
# 0.98 for the two world CLIPs trained here), where a raw bound drops nearly every competitor. Centred, unrelated
# household nouns sit well below the bound and paraphrases of one object above it.
SYNONYM_COSINE = 0.9


def head_noun(phrase: str) -> str:
    """The noun a phrase is about: the last word, or the word before "of" ("cap of marker" -> "cap")."""
    words = phrase.lower().split()
    if "of" in words[1:]:
        return words[words.index("of", 1) - 1]
    return words[-1]


def colour_span(words: Sequence[str]) -> range:
    """The first run of colour words in `words`, "and" between two colours included ("black and white mug" ->
    words 0-2); empty when there is no colour word."""
    spots = [i for i, w in enumerate(words) if w in COLOUR_WORDS]
    if not spots:
        return range(0)
    end = spots[0] + 1
    while end < len(words) and (words[end] in COLOUR_WORDS
                                or (words[end] == "and" and end + 1 < len(words) and words[end + 1] in COLOUR_WORDS)):
        end += 1
    return range(spots[0], end)


def colour_variants(phrase: str) -> list[str]:
    """The phrase with its colour replaced by each other colour ("red mug" -> "blue mug", ...). A colour of several
    words is replaced whole ("black and white mug" -> "red mug", not "white and white mug"), by the colours it does
    not name."""
    words = phrase.lower().split()
    span = colour_span(words)
    if not span:
        return []
    named = {words[i] for i in span} - {"and"}
    if named & {"grey", "gray"}:
        named |= {"grey", "gray"}
    return [" ".join([*words[:span.start], c, *words[span.stop:]]) for c in COLOUR_WORDS
            if c not in named and c != "gray"]


def competitors(
    phrase: str, phrase_vector: np.ndarray, names: Sequence[str], name_vectors: np.ndarray
) -> list[int]:
    """Indices of `names` that compete with `phrase`: not its head noun (or a name ending in it), and not a
    near-synonym by text embedding (cosine above SYNONYM_COSINE, both centred on the names' mean embedding)."""
    head = head_noun(phrase)
    vectors = np.asarray(name_vectors, dtype=np.float64)
    centre = vectors.mean(axis=0) if len(vectors) > 1 else np.zeros(vectors.shape[1:])
    cosine = _unit_rows(vectors - centre) @ _unit_rows(np.asarray(phrase_vector, dtype=np.float64) - centre)
    keep = []
    for i, name in enumerate(names):
        words = name.split()
        if words[-1] == head or name == phrase or cosine[i] > SYNONYM_COSINE:
            continue
        keep.append(i)
    return keep


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norm, 1e-12)


# Nouns that name a part of an object: "the cap of the marker" asks for the cap, while "the bottle of water" asks
# for the bottle. Only these make an "X of Y" phrase a part request.
PART_NOUNS: frozenset[str] = frozenset(
    """cap lid handle handles blade blades tip head body shaft cover pages screen case stem bowl loop loops button
    buttons wheel wheels leg legs arm arms knob spout neck label cord plug strap straps base top bottom edge corner
    hinge grip trigger nozzle bristles tines sole heel""".split()
)


# Part nouns that name an object's main body: the object minus its small attachments (a bottle's body is the bottle
# without its cap). A mask of the whole object answers them at box level, since the attachments are small; no other
# part noun may be answered with the whole ("the cap of the marker" is not the marker).
BODY_PARTS: frozenset[str] = frozenset({"body", "cover", "case"})


def part_request(phrase: str) -> tuple[str, str] | None:
    """("cap", "marker") for "cap of marker" (or "cap of the marker"); None when the phrase is not a part."""
    words = phrase.lower().split()
    if "of" not in words[1:-1]:
        return None
    i = words.index("of", 1)
    part, whole = words[:i], [w for w in words[i + 1:] if w not in ("the", "a", "an")]
    if part[-1] not in PART_NOUNS or not whole:
        return None
    return " ".join(part), " ".join(whole)
