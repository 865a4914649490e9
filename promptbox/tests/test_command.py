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
    # an unknown word passes through as the phrase (another language is refused: see test_non_english_is_refused)
    ("Äpfel", ("äpfel", None, None, None)),
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
        ("please do it", ["command='please do it'", "names no object", "accepted"]),
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


# --- corners, ordinals, destinations, negatives, typos ----------------------------------------------------------

PICK_ONLY = "promptbox only finds the object to pick"

# command -> the fields that differ from a plain Target(phrase); every other field must keep its default.
RULES = [
    # both qualifiers of a corner, hyphenated or not
    ("pick the top left cup", {"phrase": "cup", "spatial": "top left"}),
    ("grab the bottom-right block", {"phrase": "block", "spatial": "bottom right"}),
    ("the cup in the top left corner", {"phrase": "cup", "spatial": "top left"}),
    ("the left upper drawer", {"phrase": "drawer", "spatial": "top left"}),
    ("the top-left one", {"phrase": "object", "spatial": "top left"}),
    # a second qualifier that cannot combine is noted, not silently dropped
    ("the biggest cup on the left", {"phrase": "cup", "spatial": "biggest", "notes": (
        "'left' not applied: 'biggest' was, and only one position word is used (or a top/bottom with a left/right, "
        "as in 'top left')",)}),
    # ordinals
    ("pick the second cup from the left", {"phrase": "cup", "spatial": "left", "ordinal": 2}),
    ("the last cup on the left", {"phrase": "cup", "spatial": "left", "ordinal": -1}),
    ("the last cup from the left", {"phrase": "cup", "spatial": "left", "ordinal": -1}),
    ("the third mug from the right", {"phrase": "mug", "spatial": "right", "ordinal": 3}),
    ("the 2nd bottle from the top", {"phrase": "bottle", "spatial": "top", "ordinal": 2}),
    ("the second biggest box", {"phrase": "box", "spatial": "biggest", "ordinal": 2}),
    ("the second one from the left", {"phrase": "object", "spatial": "left", "ordinal": 2}),
    ("the second to last cup from the left", {"phrase": "cup", "spatial": "left", "ordinal": -2}),
    ("the second cup", {"phrase": "cup", "spatial": "left", "ordinal": 2,
                        "notes": ("'second' counted from the left, as no direction was given",)}),
    ("the second cup next to the laptop", {"phrase": "cup", "relation": "next to", "anchor": "laptop", "notes": (
        "'second' not applied: an ordinal counts along a direction ('the second cup from the left'), not among "
        "objects next to something",)}),
    # "first" with no direction is a name, not a count
    ("pick the first aid kit", {"phrase": "first aid kit"}),
    # "thing" and "object" stand for an object the qualifiers pick out
    ("could you pick up the thing on the left", {"phrase": "object", "spatial": "left"}),
    ("the object next to the laptop", {"phrase": "object", "relation": "next to", "anchor": "laptop"}),
    ("the red thing", {"phrase": "red object"}),
    # no politeness or filler left in the phrase
    ("take the screwdriver please and thanks", {"phrase": "screwdriver"}),
    ("pick the banana over by the sink", {"phrase": "banana", "relation": "next to", "anchor": "sink"}),
    ("take the cup please, thanks", {"phrase": "cup"}),
    # a destination is not a selector, and not silently ignored
    ("put the apple in the bowl", {"phrase": "apple", "notes": (f"'in the bowl' is where to put it; {PICK_ONLY}",)}),
    ("place the cup on the tray", {"phrase": "cup", "notes": (f"'on the tray' is where to put it; {PICK_ONLY}",)}),
    ("move the mug to the left", {"phrase": "mug", "notes": (f"'to the left' is where to put it; {PICK_ONLY}",)}),
    ("put the cup on the left in the box", {"phrase": "cup", "spatial": "left",
                                            "notes": (f"'in the box' is where to put it; {PICK_ONLY}",)}),
    ("put the cup away", {"phrase": "cup", "notes": (f"'away' is where to put it; {PICK_ONLY}",)}),
    ("take the cup to the kitchen", {"phrase": "cup",
                                     "notes": (f"'to the kitchen' is where to put it; {PICK_ONLY}",)}),
    ("pick up the red mug and put it in the box", {"phrase": "red mug", "notes": (
        f"'put it in the box' is for after the pick; {PICK_ONLY}",)}),
    ("go and pick the cup", {"phrase": "cup"}),
    # no leaked verbs
    ("open the drawer", {"phrase": "drawer"}),
    ("press the red button", {"phrase": "red button"}),
    ("is the phone on the table?", {"phrase": "phone", "relation": "on", "anchor": "table"}),
    ("turn the lamp on", {"phrase": "lamp"}),
    # negatives are competitors, not part of the target
    ("take the screwdriver, not the scissors", {"phrase": "screwdriver", "negatives": ("scissors",)}),
    ("take the screwdriver but not the scissors", {"phrase": "screwdriver", "negatives": ("scissors",)}),
    ("take the screwdriver, not the scissors though", {"phrase": "screwdriver", "negatives": ("scissors",)}),
    ("grab the screwdriver instead of the scissors or the knife", {"phrase": "screwdriver",
                                                                   "negatives": ("scissors", "knife")}),
    ("not the scissors, the screwdriver", {"phrase": "screwdriver", "negatives": ("scissors",)}),
    ("don't take the scissors, take the screwdriver", {"phrase": "screwdriver", "negatives": ("scissors",)}),
    ("take the blue mug, not the red one", {"phrase": "blue mug", "negatives": ("red mug",)}),
    # one object described with "and" is still one object
    ("the black and white mug", {"phrase": "black and white mug"}),
    # English that shares a word with German
    ("take the die", {"phrase": "die"}),
    # typos of object names, said in the notes
    ("take the scisors", {"phrase": "scissors", "notes": ("'scisors' read as 'scissors'",)}),
    ("grab the screwdiver next to the laptpo", {"phrase": "screwdriver", "relation": "next to", "anchor": "laptop",
                                                "notes": ("'screwdiver' read as 'screwdriver'",
                                                          "'laptpo' read as 'laptop'")}),
    # real words near a name are not typos; nor is an unknown word near no name or several
    ("pick the tall cup", {"phrase": "tall cup"}),
    ("the cup on the table", {"phrase": "cup", "relation": "on", "anchor": "table"}),
    ("pick the mugs", {"phrase": "mugs"}),
    ("take the market basket", {"phrase": "market basket"}),
    ("take the cane", {"phrase": "cane"}),
    ("take the zorblax", {"phrase": "zorblax"}),
]


@pytest.mark.parametrize(("command", "expected"), RULES, ids=[c for c, _ in RULES])
def test_parse_rules(command: str, expected: dict) -> None:
    t = parse(command)
    defaults = {"spatial": None, "relation": None, "anchor": None, "ordinal": 1, "negatives": (), "notes": ()}
    want = {**defaults, **expected}
    got = {k: getattr(t, k) for k in want}
    assert got == want
    assert t.command == command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("bring me the mug and the spoon", ["names 2 objects ('mug' and 'spoon')", "one object per goal",
                                            "accepted"]),
        ("pick up the stapler and the tape", ["names 2 objects ('stapler' and 'tape')", "one object per goal"]),
        ("grab all the red blocks", ["asks for all 'red blocks'", "one object per goal", "accepted"]),
        ("grab both mugs", ["asks for both 'mugs'", "one object per goal"]),
        ("pick 3 cups", ["asks for 3 'cups'", "one object per goal"]),
        ("the thing", ["names no object"]),
        ("pick up the object", ["names no object"]),
        ("don't take the scissors", ["names only objects to avoid ('scissors')", "accepted"]),
    ],
)
def test_several_or_no_objects_are_refused(command: str, expected: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse(command)
    for part in expected:
        assert part in str(info.value)


@pytest.mark.parametrize(
    ("command", "language"),
    [
        ("nimm die Schere", "German (nimm, die)"),
        ("gib mir bitte die Tasse", "German"),
        ("prends la tasse", "French (prends, la)"),
        ("coge las tijeras por favor", "Spanish"),
        ("prendi le forbici", "Italian"),
        ("pak de schaar", "Dutch"),
        ("la tasse", "French, Spanish or Italian (la)"),
        ("ハサミを取って", "Japanese (Katakana, Hiragana and Han script)"),
        ("红色杯子", "Chinese (Han script)"),
        ("컵을 집어", "Korean (Hangul script)"),
        ("возьми чашку", "Cyrillic script"),
        ("pick the 杯子", "Chinese (Han script)"),
    ],
)
def test_non_english_is_refused(command: str, language: str) -> None:
    with pytest.raises(ValueError) as info:
        parse(command)
    message = str(info.value)
    assert f"command={command!r}" in message
    assert language in message
    assert "reads English only" in message
    assert "accepted: a command in English" in message


def test_one_foreign_word_among_english_is_not_a_language() -> None:
    assert parse("take the la croix can").phrase == "la croix can"
    assert parse("die").phrase == "die"  # one word that is also English is not evidence
    assert parse("take the 10μF capacitor").phrase == "10μf capacitor"  # a unit sign is not Greek


def test_target_checks_the_new_fields() -> None:
    assert Target("cup", spatial="top left").spatial == "top left"
    assert Target("cup", spatial="left", ordinal=-3).ordinal == -3
    assert Target("cup", negatives=["scissors"]).negatives == ("scissors",)  # a list is stored as a tuple
    for bad in ("left right", "top bottom", "left top", "top center", "top  left"):
        with pytest.raises(ValueError, match=rf"spatial={bad!r}.*accepted.*top left, top right"):
            Target("cup", spatial=bad)
    for bad in (0, 11, -11, True, 1.0):
        with pytest.raises(ValueError, match=rf"ordinal={bad!r}.*accepted.*-1 = last"):
            Target("cup", spatial="left", ordinal=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ordinal=2 needs spatial"):
        Target("cup", ordinal=2)
    with pytest.raises(ValueError, match="negatives=.*accepted: a tuple of non-empty strings"):
        Target("cup", negatives=("",))
    with pytest.raises(ValueError, match="notes='x'"):
        Target("cup", notes="x")  # type: ignore[arg-type]
