"""What the world's objects are: a named colour palette, the classes with their parts, and the held-out pairs.

How each class looks is `shapes.py`; this file says only what exists, so commands and tests can reason about it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Saturated, well-separated RGB values: a colour word must name one unambiguous hue after shading and lighting.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (35, 160, 60),
    "blue": (35, 75, 215),
    "yellow": (240, 215, 35),
    "orange": (245, 125, 20),
    "purple": (125, 45, 175),
    "pink": (245, 125, 195),
    "white": (238, 238, 234),
    "black": (28, 28, 30),
    "brown": (115, 70, 35),
    "grey": (140, 142, 146),
}


@dataclass(frozen=True)
class ObjectClass:
    """One kind of object. `parts[0]` is the main body, whose colour is the object's colour attribute.

    `part_colours[i]` lists the colours allowed for `parts[i + 1]`; a part never takes a colour another part of the
    same object already has, so every part is visibly distinct.
    """

    name: str
    parts: tuple[str, ...]
    colours: tuple[str, ...]
    part_colours: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if len(self.part_colours) != len(self.parts) - 1:
            raise ValueError(
                f"{self.name}: {len(self.parts) - 1} secondary parts but {len(self.part_colours)} part palettes"
            )
        for colour in (*self.colours, *(c for p in self.part_colours for c in p)):
            if colour not in COLOURS:
                raise ValueError(f"{self.name}: unknown colour {colour!r}; accepted: {', '.join(COLOURS)}")


def _cls(name: str, parts: tuple[str, ...], colours: str, *part_colours: str) -> ObjectClass:
    return ObjectClass(name, parts, tuple(colours.split()), tuple(tuple(p.split()) for p in part_colours))


CLASSES: dict[str, ObjectClass] = {
    c.name: c
    for c in (
        _cls("screwdriver", ("handle", "shaft", "tip"), "red yellow blue green orange purple", "grey", "black"),
        _cls("marker", ("body", "cap"), "red green blue black orange purple pink", "black white grey"),
        _cls("scissors", ("handle", "blades"), "red blue black orange yellow green purple", "grey"),
        _cls("mug", ("body", "handle"), "red green blue white yellow black orange purple pink", "white black grey"),
        _cls("bottle", ("body", "cap"), "green blue white red orange yellow purple", "white black red grey"),
        _cls("pen", ("body", "cap"), "blue black red white green purple", "black white grey"),
        _cls("spoon", ("handle", "bowl"), "black white red green brown blue", "grey"),
        _cls("banana", ("body",), "yellow green brown"),
        _cls("apple", ("body", "stem"), "red green yellow", "brown"),
        _cls("box", ("body",), "brown white blue red green black orange"),
        _cls("ball", ("body",), "red blue yellow green orange white pink purple"),
        _cls("book", ("cover", "pages"), "red green blue black brown orange purple pink yellow", "white"),
        _cls("phone", ("case", "screen"), "white grey blue pink red purple green orange", "black"),
    )
}

# (colour, class) pairs that training scenes never contain, so validation can ask about a combination the model
# has seen only as separate words. Each colour stays on other classes and each class keeps other colours.
UNSEEN_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("green", "mug"), ("yellow", "scissors"), ("blue", "bottle"), ("pink", "book"), ("orange", "phone")}
)
