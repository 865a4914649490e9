"""parse(): a table of real-sounding commands, then the inputs that must be refused with a clear message."""

from __future__ import annotations

import pytest

from promptbox.command import MAX_COMMAND_CHARS, SPATIAL_WORDS, Target, parse

# command -> (phrase, spatial, relation, anchor)
CASES = [
    # the brief's examples
    ("pick the pen", ("pen", None, None, None)),
    ("take the scissors", ("scissors", None, None, None)),
    ("please hand me the screwdriver", ("screwdriver", None, None, None)),
    ("grab the red mug on the left", ("red mug", "left", None, None)),
    ("Scissors!", ("scissors", None, None, None)),
    ("the small blue box next to the laptop", ("small blue box", None, "next to", "laptop")),
    ("the biggest box", ("box", "biggest", None, None)),
    # verbs, openers, politeness
    ("pick up the pen", ("pen", None, None, None)),
    ("pick the pen up", ("pen", None, None, None)),
    ("Could you please get me the scissors?", ("scissors", None, None, None)),
    ("can you hand me the screwdriver please", ("screwdriver", None, None, None)),
    ("Where's the tape?", ("tape", None, None, None)),
    ("where is the stapler", ("stapler", None, None, None)),
    ("I need the stapler.", ("stapler", None, None, None)),
    ("I'm looking for the glue stick", ("glue stick", None, None, None)),
    ("kindly fetch the wooden spoon, thanks", ("wooden spoon", None, None, None)),
    ("Robot, bring me a banana", ("banana", None, None, None)),
    ("find the yellow sponge", ("yellow sponge", None, None, None)),
    ("locate that plastic bottle", ("plastic bottle", None, None, None)),
    ("show me the remote control", ("remote control", None, None, None)),
    ("point at the apple", ("apple", None, None, None)),
    ("show me where the charger is", ("charger", None, None, None)),
    ("would you mind passing me the salt shaker", ("salt shaker", None, None, None)),
    ("go get the TV remote", ("tv remote", None, None, None)),
    ("give me some tissues", ("tissues", None, None, None)),
    ("  PICK   UP\tTHE  Green   Cup  ", ("green cup", None, None, None)),
    # a verb is stripped once, so a tool named like a verb survives
    ("take the ice pick", ("ice pick", None, None, None)),
    ("pick the pick", ("pick", None, None, None)),
    # a second clause is an instruction for afterwards, not part of the target
    ("pick up the red mug and put it in the box", ("red mug", None, None, None)),
    ("grab the pliers and then hand them to me", ("pliers", None, None, None)),
    # spatial synonyms
    ("the leftmost cup", ("cup", "left", None, None)),
    ("take the cup on the far right", ("cup", "right", None, None)),
    ("grab the bottle to the right", ("bottle", "right", None, None)),
    ("the mug on your left-hand side", ("mug", "left", None, None)),
    ("the top drawer handle", ("drawer handle", "top", None, None)),
    ("the upper shelf", ("shelf", "top", None, None)),
    ("give me the lowest box", ("box", "bottom", None, None)),
    ("the apple at the bottom", ("apple", "bottom", None, None)),
    ("the cup in the middle", ("cup", "center", None, None)),
    ("the centre bowl", ("bowl", "center", None, None)),
    ("take the cup closest to me", ("cup", "nearest", None, None)),
    ("the stainless steel fork nearest to you", ("stainless steel fork", "nearest", None, None)),
    ("the mug in front", ("mug", "nearest", None, None)),
    ("the cup furthest from me", ("cup", "farthest", None, None)),
    ("the mug at the back", ("mug", "farthest", None, None)),
    ("go get the largest apple", ("apple", "biggest", None, None)),
    ("the larger box", ("box", "biggest", None, None)),
    ("pick the tiniest screw", ("screw", "smallest", None, None)),
    ("box on top", ("box", "top", None, None)),
    # "top" after the noun is the noun's part, not a position
    ("the bottle top", ("bottle top", None, None, None)),
    # "one" stands for an unnamed object
    ("grab the left one", ("object", "left", None, None)),
    ("pick the one on the left", ("object", "left", None, None)),
    ("the red one", ("red object", None, None, None)),
    ("take the biggest of the boxes", ("boxes", "biggest", None, None)),
    # relations and anchors
    ("the mug that is next to the laptop", ("mug", None, "next to", "laptop")),
    ("the cup closest to the laptop", ("cup", None, "near", "laptop")),
    ("the pen in the cup", ("pen", None, "in", "cup")),
    ("the cup to the left of the laptop", ("cup", None, "left of", "laptop")),
    ("the box on top of the book", ("box", None, "on", "book")),
    ("the mug in front of the monitor", ("mug", None, "in front of", "monitor")),
    ("the small black remote under the sofa", ("small black remote", None, "under", "sofa")),
    ("the keys behind the lamp", ("keys", None, "behind", "lamp")),
    ("the pen by the laptop", ("pen", None, "next to", "laptop")),
    ("the pen lying beside the notebook", ("pen", None, "next to", "notebook")),
    ("the phone near the keyboard", ("phone", None, "near", "keyboard")),
    ("the banana between the apple and the orange", ("banana", None, "between", "apple and orange")),
    ("the leftmost mug next to the kettle", ("mug", "left", "next to", "kettle")),
    # the anchor keeps its own qualifiers: "the biggest box" describes the anchor
    ("the pen next to the biggest box", ("pen", None, "next to", "biggest box")),
    ("the mug with the red handle", ("mug with red handle", None, None, None)),
    ("the pen over there", ("pen", None, None, None)),
    # unknown words and other scripts pass through as the phrase
    ("la tasse", ("la tasse", None, None, None)),
    ("Äpfel", ("äpfel", None, None, None)),
    ("红色杯子", ("红色杯子", None, None, None)),
    ("pick the 10mm wrench", ("10mm wrench", None, None, None)),
    ("the t-shirt", ("t-shirt", None, None, None)),
]


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c for c, _ in CASES])
def test_parse_table(command: str, expected: tuple) -> None:
    t = parse(command)
    assert (t.phrase, t.spatial, t.relation, t.anchor) == expected
    assert t.command == command


def test_table_is_large_and_covers_every_spatial_word() -> None:
    assert len(CASES) >= 40
    assert {exp[1] for _, exp in CASES} >= set(SPATIAL_WORDS)


def test_trailing_newline_is_tolerated() -> None:
    assert parse("pick the pen\n").phrase == "pen"


def test_target_is_frozen_and_checks_its_fields() -> None:
    t = Target("mug")
    with pytest.raises(AttributeError):
        t.phrase = "cup"  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"spatial='leftish'.*accepted.*left"):
        Target("mug", spatial="leftish")
    with pytest.raises(ValueError, match="phrase=''"):
        Target("")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("", ["command=''", "is empty", "accepted"]),
        ("   \t ", ["command='   \\t '", "is empty", "accepted"]),
        ("please", ["command='please'", "names no object", "accepted"]),
        ("take the", ["command='take the'", "names no object", "accepted"]),
        ("could you please pick it up, thanks", ["names no object", "accepted"]),
        ("!!!", ["command='!!!'", "names no object"]),
        ("pick the one", ["command='pick the one'", "names no object"]),
        ("next to the laptop", ["names only a reference object", "'laptop'", "accepted"]),
        ("the cup next to", ["says 'next to'", "names no reference object", "accepted"]),
        ("pick\x00the pen", ["command='pick\\x00the pen'", "control character '\\x00'", "accepted"]),
        ("pick the\x1b[31m pen", ["control character '\\x1b'"]),
        ("pick\nthe pen", ["control character '\\n'", "spaces or tabs"]),
    ],
)
def test_parse_errors(command: str, expected: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse(command)
    for part in expected:
        assert part in str(info.value)


def test_overlong_command_is_rejected_with_the_limit_and_a_short_repr() -> None:
    text = "pick the red mug " * 1200  # about 20 kB
    with pytest.raises(ValueError) as info:
        parse(text)
    message = str(info.value)
    assert "command=" in message
    assert f"MAX_COMMAND_CHARS={MAX_COMMAND_CHARS}" in message
    assert f"{len(text)} characters" in message
    assert len(message) < 400  # the value is truncated, not echoed


def test_limit_is_inclusive() -> None:
    text = "pick the pen".ljust(MAX_COMMAND_CHARS)
    assert parse(text).phrase == "pen"
    with pytest.raises(ValueError, match="MAX_COMMAND_CHARS"):
        parse(text + " ")


@pytest.mark.parametrize("value", [None, 42, b"pick the pen", ["pick", "pen"]])
def test_non_str_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError) as info:
        parse(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert "command must be a str" in message
    assert type(value).__name__ in message
    assert "accepted" in message
