"""Turn a spoken-style command ("grab the red mug on the left") into a Target the locator can score.

The parser is a small word-list grammar, not a language model: it strips what a robot operator says around the
object (openers, verbs, politeness, articles), pulls out the spatial qualifier (one word, or a top/bottom with a
left/right), an ordinal ("the second cup from the left"), one relation to an anchor object, and the objects ruled
out ("not the scissors"), and keeps everything else (colour, size, material) as the phrase CLIP is asked about.
What it sets aside (a destination, a second clause) or corrects (a typo of a known object name) goes into the
Target's notes. Commands it cannot serve are refused with a ValueError: several objects at once, and commands in
another language or script (CLIP reads English only).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from promptbox.vocabulary import COLOUR_WORDS, OBJECT_NAMES, PART_NOUNS

MAX_COMMAND_CHARS = 1000
MAX_ORDINAL = 10

SPATIAL_WORDS = ("left", "right", "top", "bottom", "center", "nearest", "farthest", "biggest", "smallest")
# Two words combine only as one vertical and one horizontal word, vertical first.
SPATIAL_PAIRS = ("top left", "top right", "bottom left", "bottom right")
RELATION_WORDS = ("next to", "on", "under", "above", "behind", "in front of", "in", "near", "far from",
                  "left of", "right of", "between")

_EXAMPLE = "a command naming an object, e.g. 'pick the red mug' or 'grab the scissors on the left'"
_ONE_OBJECT = "one object per command, e.g. 'pick the mug', then 'pick the spoon'"


@dataclass(frozen=True)
class Target:
    """What to look for.

    `phrase` is what CLIP scores. `spatial` orders the regions that are the target ("left": left to right; "top
    left": towards that corner; "biggest": by size) and `ordinal` counts along that order (1 the first, 2 the
    second, -1 the last). `relation`/`anchor` are used by selection too: the region standing in that relation to
    the located anchor object ("next to" "laptop") is chosen. `negatives` are objects the user ruled out ("not the
    scissors"): competitors, never part of the phrase. `notes` say, in words for the user, what parsing set aside
    or corrected.
    """

    phrase: str
    spatial: str | None = None
    relation: str | None = None
    anchor: str | None = None
    command: str = ""
    ordinal: int = 1
    negatives: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.phrase, str) or not self.phrase.strip():
            raise ValueError(f"phrase={self.phrase!r} is empty; accepted: a non-empty object phrase like 'red mug'")
        if self.spatial is not None and self.spatial not in SPATIAL_WORDS and self.spatial not in SPATIAL_PAIRS:
            raise ValueError(
                f"spatial={self.spatial!r} is not supported; accepted: None, one of {', '.join(SPATIAL_WORDS)}, "
                f"or a top/bottom with a left/right: {', '.join(SPATIAL_PAIRS)}"
            )
        if self.relation is not None and self.relation not in RELATION_WORDS:
            raise ValueError(
                f"relation={self.relation!r} is not supported; accepted: None, {', '.join(RELATION_WORDS)}"
            )
        # bool is an int: ordinal=True would read as "first" by accident.
        if (not isinstance(self.ordinal, int) or isinstance(self.ordinal, bool) or self.ordinal == 0
                or abs(self.ordinal) > MAX_ORDINAL):
            raise ValueError(
                f"ordinal={self.ordinal!r} is not supported; accepted: an int from 1 to {MAX_ORDINAL} (1 = first) "
                f"or from -1 to -{MAX_ORDINAL} (-1 = last)"
            )
        # An ordinal counts along an order; without one it would silently mean the most confident region.
        if self.ordinal != 1 and self.spatial is None:
            raise ValueError(
                f"ordinal={self.ordinal!r} needs spatial (the order to count in); accepted: ordinal=1 with "
                f"spatial=None, or a spatial word like 'left'"
            )
        for name in ("negatives", "notes"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"{name}={value!r} is not supported; accepted: a tuple of non-empty strings")
            object.__setattr__(self, name, tuple(value))  # a list would make the frozen Target unhashable


def parse(command: str) -> Target:
    """Parse `command` into a Target; raises ValueError (TypeError for a non-str) saying what is accepted."""
    _check(command)
    tokens = _tokens(command)
    _check_english(command, tokens)
    notes: list[str] = []

    tokens = _strip(tokens, _POLITE + _OPENERS, leading=True)
    tokens, negatives = _leading_negative(tokens)
    verb, tokens = _strip_verb(tokens)
    tokens = _cut_second_clause(tokens, notes)
    tokens, more = _negatives(tokens)
    negatives += more
    tokens = [t for t in tokens if t not in _PUNCTUATION]
    tokens = _strip(tokens, _POLITE_TRAILING, leading=False)
    _check_quantifier(command, tokens)
    tokens, destination = _split_destination(tokens, _VERB_KIND.get(verb))
    if destination:
        notes.append(f"'{' '.join(destination)}' is where to put it; promptbox only finds the object to pick")
    if verb in _PARTICLE_VERBS:
        tokens = _strip(tokens, _PARTICLES, leading=False)  # "turn the lamp on"
    tokens = _strip(tokens, _TRAILING, leading=False)

    scan = _scan(tokens)
    target_part = _clean(scan.target)
    anchor_part = _clean(scan.anchor)
    spatial, set_aside = _combine(scan.spatials)
    if set_aside:
        notes.append(f"{_quoted(set_aside)} not applied: {spatial!r} was, and only one position word is used (or a "
                     f"top/bottom with a left/right, as in 'top left')")
    ordinal = 1
    if scan.ordinal is not None:
        value, words = scan.ordinal
        if spatial is not None:
            ordinal = value
        elif scan.relation is not None:
            if value != 1:
                notes.append(f"'{words}' not applied: an ordinal counts along a direction ('the second cup from "
                             f"the left'), not among objects {scan.relation} something")
        elif value == 1 and not set(target_part) <= _PRONOUN_NOUNS:
            # "first" with no direction is more likely a name ("first aid kit") than a count.
            target_part.insert(min(scan.ordinal_at, len(target_part)), words)
        else:
            spatial, ordinal = "left", value
            notes.append(f"'{words}' counted from the left, as no direction was given")

    # "the red one" / "the thing on the left": CLIP needs a noun, and "object" is the neutral one. A bare "the one"
    # says nothing about which object, unless a qualifier or relation does.
    if len(target_part) == 1 and target_part[0] in _PRONOUN_NOUNS and spatial is None and scan.relation is None:
        target_part = []
    if target_part and target_part[-1] in _PRONOUN_NOUNS:
        target_part = [*target_part[:-1], "object"]
    if not target_part and spatial is not None:
        target_part = ["object"]

    if (not target_part or all(t in _NO_OBJECT for t in target_part)) and negatives:
        raise ValueError(
            f"command={_short(command)} names only objects to avoid ({_quoted(negatives)}), not the object to "
            f"pick; accepted: {_EXAMPLE}, or 'take the screwdriver, not the scissors'"
        )
    if not target_part or all(t in _NO_OBJECT for t in target_part):
        if scan.relation is not None:
            raise ValueError(
                f"command={_short(command)} names only a reference object ({scan.relation} "
                f"{' '.join(anchor_part)!r}), not the object to pick; accepted: {_EXAMPLE}"
            )
        raise ValueError(
            f"command={_short(command)} names no object once verbs, articles and politeness are removed; "
            f"accepted: {_EXAMPLE}"
        )
    if scan.relation is not None and not anchor_part:
        raise ValueError(
            f"command={_short(command)} says {scan.relation!r} but names no reference object after it; "
            f"accepted: {_EXAMPLE}, or 'the blue box next to the laptop'"
        )
    _check_one_object(command, target_part)

    target_part = _correct(target_part, notes)
    anchor_part = _correct(anchor_part, notes)
    negative_phrases = []
    for words in negatives:
        # "not the red one": the ruled-out object is of the target's kind.
        if words[-1] in _PRONOUN_NOUNS:
            words = [*words[:-1], target_part[-1]]
        negative_phrases.append(" ".join(_correct(words, notes)))
    return Target(
        phrase=" ".join(target_part),
        spatial=spatial,
        relation=scan.relation,
        anchor=" ".join(anchor_part) if anchor_part else None,
        command=command,
        ordinal=ordinal,
        negatives=tuple(dict.fromkeys(negative_phrases)),
        notes=tuple(dict.fromkeys(notes)),
    )


# --- validation ---------------------------------------------------------------------------------------------------


def _check(command: object) -> None:
    if not isinstance(command, str):
        hint = " (decode bytes first)" if isinstance(command, (bytes, bytearray)) else ""
        raise TypeError(f"command must be a str, got {type(command).__name__}{hint}; accepted: {_EXAMPLE}")
    # Length first, so a 20 kB paste is rejected before any per-character work.
    if len(command) > MAX_COMMAND_CHARS:
        raise ValueError(
            f"command={_short(command)} is {len(command)} characters long, over the limit of "
            f"MAX_COMMAND_CHARS={MAX_COMMAND_CHARS}; accepted: {_EXAMPLE}"
        )
    if not command.strip():
        raise ValueError(f"command={_short(command)} is empty; accepted: {_EXAMPLE}")
    # A trailing newline from `echo` is harmless; control characters inside the text are garbage or an injection.
    for ch in command.strip():
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Cs"):
            raise ValueError(
                f"command={_short(command)} contains the control character {ch!r}; accepted: printable text "
                f"with spaces or tabs, {_EXAMPLE}"
            )


def _short(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _quoted(items: list) -> str:
    """'a', 'b' and 'c' (items are strings or token lists)."""
    texts = [repr(i if isinstance(i, str) else " ".join(i)) for i in items]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


# --- tokens -------------------------------------------------------------------------------------------------------

# Words, numbers and hyphen/apostrophe compounds ("t-shirt", "john's"); \w covers every script. Commas and
# semicolons are kept as tokens: they end a "not the scissors" aside.
_WORD = re.compile(r"\w+(?:['\-]\w+)*|[,;]")
_PUNCTUATION = {",", ";"}
_CONTRACTIONS = {"where's": "where is", "what's": "what is", "that's": "that is", "it's": "it is",
                 "i'm": "i am", "i'd": "i would", "i'll": "i will", "can't": "cannot", "there's": "there is",
                 "which's": "which is", "here's": "here is", "don't": "do not", "dont": "do not",
                 "isn't": "is not", "aren't": "are not", "cant": "cannot"}
# "top-left" is two qualifiers; "left-hand" and "t-shirt" stay one token.
_POSITION_PARTS = {"top", "bottom", "upper", "lower", "left", "right"}


def _tokens(command: str) -> list[str]:
    text = unicodedata.normalize("NFC", command).lower().replace("\u2019", "'")
    out: list[str] = []
    for word in _WORD.findall(text):
        parts = word.split("-")
        if len(parts) == 2 and set(parts) <= _POSITION_PARTS:
            out.extend(parts)
            continue
        out.extend(_CONTRACTIONS.get(word, word).split())
    return out


def _phrases(*texts: str) -> list[tuple[str, ...]]:
    return [tuple(t.split()) for t in texts]


def _match(tokens: list[str], i: int, table: dict[tuple[str, ...], str]) -> tuple[int, str | None]:
    """Longest entry of `table` starting at tokens[i]: (its length, its value), or (0, None)."""
    for n in range(min(_LONGEST, len(tokens) - i), 0, -1):
        value = table.get(tuple(tokens[i:i + n]))
        if value is not None:
            return n, value
    return 0, None


def _strip(tokens: list[str], words: list[tuple[str, ...]], *, leading: bool) -> list[str]:
    """Remove any of `words` (token tuples) from the start or end, repeatedly."""
    changed = True
    while changed and tokens:
        changed = False
        for w in sorted(words, key=len, reverse=True):
            n = len(w)
            if leading and tuple(tokens[:n]) == w:
                tokens, changed = tokens[n:], True
                break
            if not leading and len(tokens) >= n and tuple(tokens[-n:]) == w:
                tokens, changed = tokens[:-n], True
                break
    return tokens


# --- filler and verbs ---------------------------------------------------------------------------------------------

_POLITE = _phrases("please", "kindly", "pls", "plz", "hey", "hi", "ok", "okay", "so", "now", "just", "robot",
                   "hello", "excuse me", ",", ";")
_OPENERS = _phrases(
    "can you", "could you", "would you", "will you", "can u", "could u", "would you mind", "would you be able to",
    "are you able to", "i would like you to", "i want you to", "i need you to", "go and", "go", "try to", "quickly",
    "first", "then", "and", "but", "instead", "rather",
)
# One verb phrase is stripped, once, so "take the ice pick" keeps "ice pick" and "pick the pick" keeps "pick".
_PICK_VERBS = (
    "pick", "pick up", "pick out", "take", "take up", "take out", "grab", "get", "fetch", "hand", "give", "find",
    "locate", "show", "point at", "point to", "look for", "search for", "where is", "where are", "i need", "i want",
    "i would like", "i am looking for", "looking for", "select", "choose", "lift", "lift up", "hold", "retrieve",
    "reach for", "go get", "go grab", "go fetch", "is there", "are there", "do you see", "can you see", "pass",
    "pass me", "identify", "detect", "highlight", "collect", "show me where", "tell me where", "is", "are",
    "which is", "what is",
    # after "would you mind ..."
    "picking", "picking up", "taking", "grabbing", "getting", "fetching", "bringing", "handing", "giving", "passing",
    "finding",
    # actions on the object: what to act on is still the object to find ("open the drawer")
    "open", "close", "shut", "press", "push", "pull", "turn", "turn on", "turn off", "switch", "switch on",
    "switch off", "flip", "twist", "rotate", "unscrew", "wipe", "clean", "use", "touch", "tap", "grasp", "squeeze",
    "pour", "fill", "empty", "fold", "unfold", "unplug", "plug in", "stir", "cut", "slice", "peel", "wash", "shake",
    "check", "inspect", "examine", "look at", "remove", "knock over", "tip over", "unlock", "open up", "clear",
    "tidy up", "catch", "pinch", "squash", "crush",
    # a verb that names nothing: "please do it" then names no object
    "do",
)
# Verbs whose object is followed by where it goes: "put the apple in the bowl".
_PLACE_VERBS = (
    "put", "put down", "put away", "put back", "place", "set", "set down", "lay", "lay down", "drop", "stack",
    "hang", "insert", "store", "return", "position", "stand", "leave", "load", "throw", "throw away", "toss",
    "tuck", "stick", "dump", "placing", "putting",
)
# Verbs that take a direction ("move the mug to the left") but whose other phrases still describe the object.
_MOVE_VERBS = ("move", "shift", "slide", "drag", "carry", "bring", "transfer", "relocate", "moving", "carrying")
_VERB_KIND = {**{v: "pick" for v in _PICK_VERBS}, **{v: "place" for v in _PLACE_VERBS},
              **{v: "move" for v in _MOVE_VERBS}}
_VERB_TABLE = {tuple(v.split()): v for v in _VERB_KIND}
_PARTICLE_VERBS = {"turn", "switch", "plug in", "knock over", "tip over", "open up"}
_PARTICLES = _phrases("on", "off", "in", "over", "out")
_VERB_OBJECTS = _phrases("me", "us", "over", "up")
_DETERMINERS = _phrases("the", "a", "an", "that", "this", "these", "those", "some", "my", "your", "our", "one of",
                        "of", "any")
_ARTICLES = {"the", "a", "an"}
# Politeness and filler at the end, stripped before looking for a destination.
_POLITE_TRAILING = _phrases(
    "please", "thanks", "thank you", "thank u", "thanks a lot", "cheers", "for me", "for us", "to me", "to us",
    "now", "right now", "again", "quickly", "if you can", "when you can", "if you could", "if you would",
    "if possible", "if you do not mind", "and", "instead", "though", "either", ",", ";",
)
_TRAILING = _POLITE_TRAILING + _phrases(
    "up", "over there", "there", "here", "right here", "right there", "over", "that is", "which is", "that", "which",
    "sitting", "lying", "standing", "located", "placed", "is", "are",
)
# Words that stand for an object without naming it: "pick it up" gives CLIP nothing to look for.
_NO_OBJECT = {"it", "them", "something", "anything", "everything", "stuff"}
# ... and words that stand for an object the qualifiers pick out: "the thing on the left" -> "object".
_PRONOUN_NOUNS = {"one", "ones", "thing", "things", "object", "objects", "item", "items"}
# "and put it in the box": the second clause is an instruction for after the pick, not part of the target.
_SECOND_CLAUSE_VERBS = {"put", "place", "give", "bring", "hand", "drop", "move", "hold", "set", "leave", "throw",
                        "pass", "carry", "lift", "pick", "take", "then", "open", "close", "pour", "shake", "use",
                        "stack", "insert", "toss"}


def _strip_verb(tokens: list[str]) -> tuple[str | None, list[str]]:
    """Strip one verb phrase, then what follows it ("me", articles). Returns (the verb, the rest)."""
    tokens = _strip(tokens, _POLITE + _OPENERS, leading=True)
    n, verb = _match(tokens, 0, _VERB_TABLE)
    if n:
        tokens = _strip(tokens[n:], _VERB_OBJECTS + _POLITE, leading=True)
    return verb, _strip(tokens, _DETERMINERS, leading=True)


def _cut_second_clause(tokens: list[str], notes: list[str]) -> list[str]:
    for i in range(1, len(tokens) - 1):
        if tokens[i] in ("and", "then", ",", ";") and tokens[i + 1] in _SECOND_CLAUSE_VERBS:
            rest = _strip([t for t in tokens[i:] if t not in _PUNCTUATION], _phrases("and", "then"), leading=True)
            if rest:
                notes.append(f"'{' '.join(rest)}' is for after the pick; promptbox only finds the object to pick")
            return tokens[:i]
    return tokens


def _check_quantifier(command: str, tokens: list[str]) -> None:
    """ "grab all the red blocks", "both mugs", "two cups": a goal is one object."""
    words = _strip(tokens, _DETERMINERS, leading=True)
    if not words or not (words[0] in _QUANTIFIERS or (words[0].isdecimal() and int(words[0]) > 1)):
        return
    what = [t for t in _strip(words[1:], _DETERMINERS + _phrases("of"), leading=True) if t not in _ARTICLES]
    named = f" {' '.join(what)!r}" if what else ""
    raise ValueError(
        f"command={_short(command)} asks for {words[0]}{named}; promptbox finds one object per goal; "
        f"accepted: {_ONE_OBJECT}"
    )


_QUANTIFIERS = {"all", "every", "each", "both", "several", "multiple", "many", "few", "two", "three", "four",
                "five", "six", "seven", "eight", "nine", "ten"}
_CONJUNCTIONS = _phrases("and", "plus", "as well as", "along with", "together with")


def _check_one_object(command: str, words: list[str]) -> None:
    """ "the mug and the spoon" is two objects; "the black and white mug" is one (the first part only describes)."""
    parts: list[list[str]] = [[]]
    i = 0
    while i < len(words):
        n = next((len(c) for c in _CONJUNCTIONS if tuple(words[i:i + len(c)]) == c), 0)
        if n:
            parts.append([])
            i += n
            continue
        parts[-1].append(words[i])
        i += 1
    parts = [p for p in parts if p]
    if len(parts) < 2 or all(w in _ATTRIBUTES for p in parts[:-1] for w in p):
        return
    raise ValueError(
        f"command={_short(command)} names {len(parts)} objects ({_quoted(parts)}); promptbox finds one object per "
        f"goal; accepted: {_ONE_OBJECT}"
    )


# --- negatives ----------------------------------------------------------------------------------------------------

_NEGATION = _phrases("not", "but not", "and not", "rather than", "instead of", "except", "except for", "other than")
_NEGATION_TABLE = {w: " ".join(w) for w in _NEGATION}
_NEGATION_ENDS = {",", ";", "but"}


def _leading_negative(tokens: list[str]) -> tuple[list[str], list[list[str]]]:
    """ "not the scissors, the screwdriver" / "don't take the scissors, take the screwdriver"."""
    if tokens[:1] != ["not"] and tokens[:2] != ["do", "not"]:
        return tokens, []
    end = next((i for i, t in enumerate(tokens) if t in _NEGATION_ENDS), len(tokens))
    clause = _strip(tokens[:end], _phrases("do not", "not"), leading=True)
    _, clause = _strip_verb(clause)
    return tokens[end:], _split_negatives(clause)


def _negatives(tokens: list[str]) -> tuple[list[str], list[list[str]]]:
    """Take out "not the scissors" (also "but not ...", "rather than ...", "instead of ..."): up to the next comma,
    "but", or the end."""
    kept: list[str] = []
    found: list[list[str]] = []
    i = 0
    while i < len(tokens):
        n, marker = _match(tokens, i, _NEGATION_TABLE)
        # A bare "not" negates an object only after a pause or before an article: "the cup that is not red" is
        # an attribute, left alone.
        if marker == "not" and not (kept and kept[-1] in (",", ";", "but", "and")) and not (
            i + 1 < len(tokens) and (tokens[i + 1],) in _DETERMINERS
        ):
            n = 0
        if not n or not kept:
            kept.append(tokens[i])
            i += 1
            continue
        while kept and kept[-1] in (",", ";", "but", "and"):
            kept.pop()
        end = next((j for j in range(i + n, len(tokens)) if tokens[j] in _NEGATION_ENDS), len(tokens))
        found += _split_negatives(tokens[i + n:end])
        i = end + 1 if end < len(tokens) and tokens[end] in _PUNCTUATION else end
    return kept, found


def _split_negatives(words: list[str]) -> list[list[str]]:
    """ "the scissors or the knife though" -> [["scissors"], ["knife"]]."""
    out: list[list[str]] = [[]]
    for w in words:
        if w in ("or", "and", "nor", ",", ";"):
            out.append([])
        else:
            out[-1].append(w)
    return [c for c in (_clean(_strip(p, _TRAILING, leading=False)) for p in out) if c and c != ["it"]]


def _clean(words: list[str]) -> list[str]:
    """Leading determiners and trailing filler off; articles inside carry nothing for CLIP ("mug with red
    handle")."""
    words = _strip(_strip(words, _DETERMINERS, leading=True), _TRAILING, leading=False)
    return [t for t in words if t not in _ARTICLES]


# --- spatial qualifiers, ordinals, relations and destinations -----------------------------------------------------


def _spatial_table() -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}

    def add(canonical: str, *texts: str) -> None:
        for t in texts:
            table[tuple(t.split())] = canonical

    for side in ("left", "right"):
        add(side, f"{side}most", f"far {side}", f"{side}-hand", f"{side} hand")
        for prep in ("on", "to", "at"):
            for det in ("the ", "your ", "my ", ""):
                for far in ("far ", ""):
                    for tail in ("", " side", " hand side", "-hand side"):
                        add(side, f"{prep} {det}{far}{side}{tail}")
    add("top", "topmost", "uppermost", "highest", "on top", "at the top", "on the top", "in the top", "at top")
    add("bottom", "bottommost", "lowermost", "lowest", "at the bottom", "on the bottom", "in the bottom",
        "at bottom")
    add("center", "centre", "center", "middle", "central", "centermost", "centremost", "in the middle",
        "in the center", "in the centre", "at the center", "at the centre", "in the middle of the table")
    add("nearest", "nearest", "closest", "nearer", "closer", "in front", "at the front", "in the front")
    for near in ("nearest", "closest", "near", "nearer", "closer"):
        for to in ("to ", ""):
            for me in ("me", "us", "you", "the robot", "the camera", "the gripper", "myself"):
                add("nearest", f"{near} {to}{me}")
    add("farthest", "farthest", "furthest", "farther", "further", "most distant", "at the back", "in the back")
    for far in ("farthest", "furthest", "farther", "further", "far"):
        for me in ("me", "us", "you", "the robot", "the camera", "the gripper"):
            add("farthest", f"{far} from {me}", f"{far} away from {me}")
    add("biggest", "biggest", "largest", "bigger", "larger")
    add("smallest", "smallest", "tiniest", "littlest", "smaller", "tinier")
    # Where an ordinal counts from: "the second cup from the left".
    for side, canonical in (("left", "left"), ("right", "right"), ("top", "top"), ("bottom", "bottom"),
                            ("front", "nearest"), ("back", "farthest")):
        for head in ("from the", "from", "counting from the", "counting from"):
            add(canonical, f"{head} {side}", f"{head} {side} side")
    # Corners: "the top left cup", "in the bottom-right corner" (the hyphen is split in _tokens).
    for vertical, v in (("top", "top"), ("upper", "top"), ("bottom", "bottom"), ("lower", "bottom")):
        for side in ("left", "right"):
            for base in (f"{vertical} {side}", f"{vertical} {side} corner", f"{vertical} {side}-hand corner",
                         f"{vertical} {side} hand corner", f"{vertical} {side}most"):
                add(f"{v} {side}", base, *(f"{p} the {base}" for p in ("in", "at", "on", "from")),
                    *(f"{p} {base}" for p in ("in", "at", "on", "from")))
    return table


def _relation_table() -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}

    def add(canonical: str, *texts: str) -> None:
        for t in texts:
            table[tuple(t.split())] = canonical

    add("next to", "next to", "beside", "besides", "by", "alongside", "right next to", "just next to")
    add("on", "on", "on top of", "onto", "atop", "upon", "sitting on", "lying on", "resting on", "standing on")
    add("under", "under", "underneath", "beneath", "below")
    add("above", "above", "over")
    add("behind", "behind", "in back of", "at the back of", "at the back of the", "in the back of")
    add("in front of", "in front of", "at the front of")
    add("in", "in", "inside", "inside of", "within", "into")
    add("near", "near", "near to", "close to", "closest to", "nearest to", "nearer to", "closer to", "by the side of")
    add("far from", "far from", "away from", "far away from", "farthest from", "furthest from")
    add("between", "between", "in between")
    # "to the left of the laptop" is a relation, while "on the left" is a spatial qualifier.
    for words, side in list(_SPATIAL_TABLE.items()):
        if side in ("left", "right") and words[-1] in ("left", "right", "side"):
            table[(*words, "of")] = f"{side} of"
    add("left of", "left of")
    add("right of", "right of")
    return table


def _ordinal_table() -> dict[tuple[str, ...], str]:
    words = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
    table: dict[tuple[str, ...], str] = {}
    for n, word in enumerate(words, start=1):
        digits = f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n, 'th') }"
        for w in (word, digits):
            table[(w,)] = str(n)
            if n > 1:
                for form in (f"{w} last", f"{w} to last", f"{w} from last", f"{w}-to-last", f"{w}-last"):
                    table[tuple(form.split())] = str(-n)
    for form in ("last", "next to last", "next-to-last", "penultimate", "last but one"):
        table[tuple(form.split())] = "-2" if form != "last" else "-1"
    return table


_SPATIAL_TABLE = _spatial_table()
_RELATION_TABLE = _relation_table()
_ORDINAL_TABLE = _ordinal_table()
_LONGEST = max(len(k) for k in (*_SPATIAL_TABLE, *_RELATION_TABLE, *_VERB_TABLE, *_ORDINAL_TABLE))
# Bare direction words are adjectives only before a noun: "the left mug" is spatial, "the bottle top" is a noun.
_ADJECTIVE_ONLY = {("left",): "left", ("right",): "right", ("top",): "top", ("upper",): "top",
                   ("bottom",): "bottom", ("lower",): "bottom", ("front",): "nearest", ("back",): "farthest"}
_NOT_A_NOUN = {"of", "here", "there", "now", "away", "the", "a", "an", "and"}
# "over" as a relation would swallow "over there"; "by" and "over" only count as relations before a determiner.
_NEEDS_DETERMINER_AFTER = {("by",), ("over",)}
# Words that start where the object goes, whatever the verb: "take the cup to the kitchen".
_DIRECTIONAL = {"to", "into", "onto", "towards", "toward"}
_DEST_ADVERBS = _phrases("away", "aside", "back", "down", "there", "here", "over there", "over here", "back there",
                         "back here", "out of the way", "somewhere else", "elsewhere")


def _relation_at(tokens: list[str], i: int) -> tuple[int, str | None]:
    n, r = _match(tokens, i, _RELATION_TABLE)
    if r is not None and tuple(tokens[i:i + n]) in _NEEDS_DETERMINER_AFTER:
        nxt = tokens[i + n:i + n + 1]
        if not nxt or (nxt[0],) not in _DETERMINERS:
            return 0, None
    return n, r


def _split_destination(tokens: list[str], kind: str | None) -> tuple[list[str], list[str]]:
    """Split off where the object goes: (the object part, the destination).

    After "put"/"place": a trailing "away"/"down", the first relation ("in the bowl"), or a position at the end
    ("on the left"). After "move"/"bring": a direction ("to the left"). After any verb or none: "to"/"into"/
    "towards" that starts no qualifier or relation ("take the cup to the kitchen").
    """
    if kind in ("place", "move"):
        for adverb in sorted(_DEST_ADVERBS, key=len, reverse=True):
            if len(tokens) > len(adverb) and tuple(tokens[-len(adverb):]) == adverb:
                return tokens[:-len(adverb)], tokens[-len(adverb):]
    i = 0
    while i < len(tokens):
        n_s, s = _match(tokens, i, _SPATIAL_TABLE)
        n_r, r = _relation_at(tokens, i)
        n_o, _ = _match(tokens, i, _ORDINAL_TABLE)
        word = tokens[i]
        if n_o > max(n_s, n_r):  # "second to last"
            i += n_o
            continue
        if i > 0 and (  # the object comes first
            word in _DIRECTIONAL - {"to"}
            or (word == "to" and not n_s and not n_r)
            or (word == "to" and n_s >= n_r and kind in ("place", "move"))
            or (kind == "place" and r is not None and n_r >= n_s)
            or (kind == "place" and s is not None and n_s > n_r and i + n_s == len(tokens))
        ):
            return tokens[:i], tokens[i:]
        i += max(n_s, n_r, 1)
    return tokens, []


@dataclass
class _Scan:
    spatials: list[str]
    ordinal: tuple[int, str] | None  # (value, the words said)
    ordinal_at: int  # where the ordinal stood in `target`
    relation: str | None
    target: list[str]
    anchor: list[str]


def _scan(tokens: list[str]) -> _Scan:
    """Left to right, longest match first: collect spatial qualifiers and the first ordinal, split at the first
    relation.

    Qualifiers inside the anchor part stay there ("next to the biggest box" describes the box, not the target).
    """
    spatials: list[str] = []
    ordinal: tuple[int, str] | None = None
    ordinal_at = 0
    kept: list[str] = []
    i = 0
    while i < len(tokens):
        n_s, s = _match(tokens, i, _SPATIAL_TABLE)
        n_r, r = _relation_at(tokens, i)
        n_o, o = _match(tokens, i, _ORDINAL_TABLE)
        if o is not None and n_o >= max(n_s, n_r) and ordinal is None:
            ordinal, ordinal_at = (int(o), " ".join(tokens[i:i + n_o])), len(kept)
            i += n_o
            continue
        if r is not None and n_r >= n_s:
            return _Scan(spatials, ordinal, ordinal_at, r, kept, tokens[i + n_r:])
        if s is None and i + 1 < len(tokens) and tokens[i + 1] not in _NOT_A_NOUN:
            s = _ADJECTIVE_ONLY.get((tokens[i],))
            n_s = 1 if s else 0
        if s is not None:
            spatials.append(s)
            i += n_s
            continue
        kept.append(tokens[i])
        i += 1
    return _Scan(spatials, ordinal, ordinal_at, None, kept, [])


_VERTICAL = ("top", "bottom")
_HORIZONTAL = ("left", "right")


def _combine(found: list[str]) -> tuple[str | None, list[str]]:
    """The first qualifier wins, except that a top/bottom and a left/right make one corner ("top left").

    Returns (spatial, the qualifiers set aside).
    """
    if not found:
        return None, []
    words = [w for s in found for w in s.split()]
    if words[0] not in _VERTICAL + _HORIZONTAL:
        return found[0], list(dict.fromkeys(s for s in found if s != found[0]))
    vertical = next((w for w in words if w in _VERTICAL), None)
    horizontal = next((w for w in words if w in _HORIZONTAL), None)
    kept = {vertical, horizontal}
    spatial = " ".join(w for w in (vertical, horizontal) if w)
    return spatial, list(dict.fromkeys(w for w in words if w not in kept))


# --- language -----------------------------------------------------------------------------------------------------

# Function words and verbs of the languages an operator most likely falls back to. Words that are also English
# ("die", "bring", "links") count only beside a word that is not.
_FOREIGN = {
    "German": """der die das den dem des ein eine einen einem und nimm nehmen gib hol hole bitte mir mich mit auf
        neben links rechts von zu ist wo greif greife bringe danke heb hebe zeig zeige finde nicht oben unten
        dort hier ich""",
    "French": """le la les un une des du et prends prendre prenez donne donnez moi svp stp merci au aux sur sous
        dans avec gauche droite attrape ramasse apporte cherche trouve est où pour vous plaît ce cette""",
    "Spanish": """el la los las una unos unas y toma tome coge coja agarra dame deme trae tráeme por favor gracias
        izquierda derecha en con sobre debajo junto al del de es dónde busca encuentra pásame esta este""",
    "Italian": """il lo la gli le un uno una prendi prenda dammi passami per favore grazie sinistra destra su
        sotto nel nella sul sulla con della del di è dove afferra portami cerca trova questo questa""",
    "Dutch": """de het een en pak neem geef breng mij alsjeblieft alstublieft dank bedankt links rechts op onder
        naast met van waar haal zoek vind pakken deze dit""",
}
_FOREIGN_WORDS = {lang: set(words.split()) for lang, words in _FOREIGN.items()}
_ALSO_ENGLISH = {"die", "links", "hole", "son", "come", "pour", "dame", "favor", "per", "sale", "con", "on", "in",
                 "a", "me", "is", "so", "was", "will", "also", "bring", "de", "en", "un", "van", "ce"}
# Japanese text mixes kana with Han characters: kana, not Han, says which language it is.
_SCRIPT_LANGUAGE = {"HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HANGUL": "Korean", "THAI": "Thai",
                    "GREEK": "Greek", "HEBREW": "Hebrew", "ARMENIAN": "Armenian", "GEORGIAN": "Georgian"}
_SCRIPT_NAMES = {"CJK": "Han", "HANGUL": "Hangul"}


def _check_english(command: str, tokens: list[str]) -> None:
    """Refuse a command in another script or language: the CLIP text encoder reads English only, and a French
    phrase scored as English would match something, just not what was asked."""
    scripts: dict[str, int] = {}
    for ch in command:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "").replace("HALFWIDTH ", "").replace("FULLWIDTH ", "")
        # Only letters of a script ("MICRO SIGN" and "MODIFIER LETTER ..." name no script).
        if not any(k in name for k in ("LETTER", "IDEOGRAPH", "SYLLABLE", "CHARACTER")) or name.startswith(
            ("LATIN", "MODIFIER")
        ):
            continue
        script = name.split()[0].split("-")[0]
        scripts[script] = scripts.get(script, 0) + 1
    if scripts.get("GREEK", 0) <= 2:
        scripts.pop("GREEK", None)  # a unit or a symbol: "10μF capacitor"
    if scripts:
        names = [_SCRIPT_NAMES.get(s, s.title()) for s in scripts]
        languages = list(dict.fromkeys(_SCRIPT_LANGUAGE[s] for s in scripts if s in _SCRIPT_LANGUAGE))
        if not languages and set(scripts) == {"CJK"}:
            languages = ["Chinese"]
        script_text = _quoted(names).replace("'", "") + " script"
        said = f"{languages[0]} ({script_text})" if len(languages) == 1 else script_text
        raise ValueError(
            f"command={_short(command)} is written in {said}; the CLIP model reads English only; accepted: "
            f"a command in English, e.g. 'pick the red mug'"
        )

    words = [t for t in tokens if t not in _PUNCTUATION]
    foreign = [w for w in words if any(w in s for s in _FOREIGN_WORDS.values())]
    strong = [w for w in foreign if w not in _ENGLISH_WORDS and w not in _ALSO_ENGLISH]
    english = [w for w in words if w in _ENGLISH_MARKERS and w not in strong]
    if not strong or len(foreign) <= len(english):
        return
    score = {lang: sum(2 if w in strong else 1 for w in foreign if w in s) for lang, s in _FOREIGN_WORDS.items()}
    top = max(score.values())
    best = [lang for lang, v in score.items() if v == top]
    said = best[0] if len(best) == 1 else ", ".join(best[:-1]) + " or " + best[-1]
    raise ValueError(
        f"command={_short(command)} looks like {said} ({', '.join(dict.fromkeys(foreign))}); the CLIP model reads "
        f"English only; accepted: a command in English, e.g. 'pick the red mug'"
    )


# --- typos --------------------------------------------------------------------------------------------------------

# Describing words: never corrected towards an object name ("tall" is not a misspelt "ball"), and an "and" between
# them does not make two objects ("the black and white mug").
_ATTRIBUTES = set(COLOUR_WORDS) | set(
    """big small large little tiny huge tall short long wide narrow thin thick round square flat empty full open
    closed clean dirty old new dark light bright pale shiny matte metal metallic wooden wood plastic glass paper
    ceramic rubber leather steel stainless silver gold golden striped spotted plain broken heavy soft hard hot cold
    wet dry cheap fancy electric digital red-and-white black-and-white transparent clear opaque cardboard cotton
    wool woolen fabric cloth stone marble glossy dull fresh ripe rotten dotted checked patterned printed colourful
    colorful blank used unused sharp blunt curved straight bent folded rolled stacked half whole tallest shortest
    longest widest thinnest thickest darkest lightest brightest heaviest lightest emptiest fullest cleanest new
    newest oldest sealed unopened opened
    """.split()
)
# Common words near object names ("table" is one letter from "tablet") and scenery an anchor may name.
_COMMON_WORDS = set(
    """table desk shelf shelves counter floor wall sink drawer drawers cabinet cupboard fridge door window bed sofa
    couch chair stove oven bin trash rubbish basket bag corner edge side middle front back handle part piece pieces
    thing things object objects item items kitchen room robot camera gripper hand arm left right top bottom centre
    center near next with without from into onto other another same different both either neither none each
    every some many much more most less least very really quite pretty little about around like just also only
    even still then than them they there these those this that what which where when while with your yours mine
    ours their theirs here have has had having does doing done make made take taken took give given gave come came
    went gone goes going look looks looking want wants need needs show tell said says stay fall fell call called
    tool tools food fruit drink drinks game games toys tile tiles board boards stand pile heap row line set sets
    lamp light lights cable cables wire wires string tube pipe rack hook hooks holder stand mat rug sheet sheets
    page pages book books note notes sign signs label labels tag tags case cases pack packs packet packets can
    cans tin tins pot pots pan pans tray trays plate plates bowl bowls cup cups mug mugs jar jars box boxes tall
    ball balls bell bells wall walls hall mall call fall doll dolls pill pills bill fill well tell sell shell
    shells spell smell cell bowl bowls towel towels tower trowel power shower flower flowers""".split()
)


# Real words a typing slip away from an object name ("market" is not a misspelt "marker"): found by running the
# corrector over the 30,000 most frequent whole words of CLIP's BPE vocabulary.
_NOT_TYPOS = set(
    """cause causes port ports post posts soon form forms makes market marketer marketers weather shows wins beat
    beats role roles lines click clicks wife wind winds hate hates sale sales chase chases host hosts cats heard heat
    heats hits likes follower followers planet rule rules patient patients charge charges changer changers pure
    highlights fame stuck cape capes mill mills bush bushes classes poll polls greater pine pines purpose purposes
    tons cartoon cartoons tale tales opinion opinions bedroom bedrooms caster casters pearl pearls bars shock shocks
    wore beard beards devices driven globe globes posters powder poet poets plot plots combo cons dollars laughter
    painter painters graders fielder whiskey whisky scandal crap beaches chatting swan swans threats contains contain
    cart carts handy charter drove magnetic cousins hardy clan clans ratings battles stripe stripes cane canes bracket
    brackets cooling ballroom muse branches peas pulls talents coup bows crashes bets bard chard lick licks scar
    shores hare laps pursue shakes pitches milky witches slap chap chaps pillars skipper bender staple staples pent
    taps screams pits castles tots clashes halt tabletop plunge hairy peat fang pane commuter commuters watcher
    watchers removes piers hoot plateau carbs dyer paddock taster pointer pointers slippery mousse tweeters scapes
    cams clam clams caste salutes waiter notices erase cancels scares hath palate bearish ballots puns phrases tread
    boar bowel calculate tongues choking mariner sampler reopens belles cabs pate rigs filet pawn wager plumber
    crayons grooves chatter pout pugs gathers bandana magenta grape salty scarlet hangover shore laid spatial
    pints cease shippers litters mariners breasts""".split()
)


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    if word.endswith("fe"):
        return word[:-2] + "ves"
    if word.endswith("f"):
        return word[:-1] + "ves"
    if word.endswith(("ato", "oto")) and word != "photo":
        return word + "es"  # potatoes, tomatoes
    return word + "s"


def _with_plurals(words: set[str]) -> set[str]:
    return words | {_plural(w) for w in words}


# Object-name words, which a typo is corrected to; only a name's last word takes a plural ("hard drives").
_CANDIDATES = {w: w == name.split()[-1] for name in OBJECT_NAMES for w in name.split()}
# Words of the parser's own tables: English by construction.
_TABLE_WORDS = {w for table in (_SPATIAL_TABLE, _RELATION_TABLE, _VERB_TABLE, _ORDINAL_TABLE) for k in table
                for w in k} | {w for ws in (_POLITE, _OPENERS, _VERB_OBJECTS, _DETERMINERS, _TRAILING, _CONJUNCTIONS,
                                            _DEST_ADVERBS, _NEGATION) for k in ws for w in k}
_ENGLISH_MARKERS = _TABLE_WORDS | _QUANTIFIERS | _NO_OBJECT | _PRONOUN_NOUNS | {"it", "and", "or", "with", "not"}
_ENGLISH_WORDS = (_ENGLISH_MARKERS | _with_plurals(set(_CANDIDATES) | _COMMON_WORDS | set(PART_NOUNS)) | _ATTRIBUTES
                  | _NOT_TYPOS)
# Typing slips, not different words: a substitution costs 1 between neighbouring keys and 2 otherwise.
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_AT = {ch: (row, col + (0.0, 0.25, 0.75)[row]) for row, keys in enumerate(_KEY_ROWS)
           for col, ch in enumerate(keys)}
# A word with one of these endings is an inflected real word ("driver", "closing"), unless the name ends alike.
_SUFFIXES = ("ing", "ed", "ly", "ness", "tion", "ment", "est", "ful", "less", "ous", "ity", "ies", "er", "ers")


def _neighbours(a: str, b: str) -> bool:
    if a not in _KEY_AT or b not in _KEY_AT:
        return False
    (ra, xa), (rb, xb) = _KEY_AT[a], _KEY_AT[b]
    return abs(ra - rb) <= 1 and abs(xa - xb) <= 1.0


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Edits from a to b: insertions, deletions and adjacent swaps ("sicssors") cost 1, a substitution 1 between
    neighbouring keys and 2 otherwise. Anything over `limit` returns limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            swap = 0 if ca == cb else (1 if _neighbours(ca, cb) else 2)
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + swap)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        prev2, prev = prev, row
    return prev[-1]


def _same_ending(form: str, suffix: str) -> bool:
    # "-er" for "-or"/"-ar" is a common slip ("calculater"); "-er" for nothing is another word ("driver"); a
    # plural name keeps the ending ("tweezer").
    return form.endswith((suffix, suffix + "s")) or (suffix == "er" and form.endswith(("or", "ar")))


def _correction(word: str) -> str | None:
    """The one object name (or its plural) within reach of an unknown word: 1 edit from 4 letters, 2 from 7; None
    when the word is known English, too short, or near no name or several.

    Real words one letter from a name mostly differ in their first letter (time/lime, work/fork) while typos
    rarely do, so the first letter must match.
    """
    if len(word) < 4 or not word.isalpha() or word in _ENGLISH_WORDS:
        return None
    limit = 2 if len(word) >= 7 else 1
    near: dict[str, tuple[tuple[int, bool], str]] = {}
    for name, head in _CANDIDATES.items():
        for form in (name, _plural(name)) if head else (name,):
            if form[0] != word[0] or any(word.endswith(s) and not _same_ending(form, s) for s in _SUFFIXES):
                continue
            # Between a name's forms at one distance, the one as plural as the word: "glases" -> "glasses".
            d = (_edit_distance(word, form, limit), word.endswith("s") != form.endswith("s"))
            if d[0] <= limit and (name not in near or d < near[name][0]):
                near[name] = (d, form)
    if len(near) != 1:
        return None
    return next(iter(near.values()))[1]


def _correct(words: list[str], notes: list[str]) -> list[str]:
    out = []
    for w in words:
        fixed = _correction(w)
        if fixed is not None:
            notes.append(f"{w!r} read as {fixed!r}")
        out.append(fixed or w)
    return out
