"""Turn a spoken-style command ("grab the red mug on the left") into a Target the locator can score.

The parser is a small word-list grammar, not a language model: it strips what a robot operator says around the
object (openers, verbs, politeness, articles), pulls out one spatial qualifier and one relation to an anchor object,
and keeps everything else (colour, size, material) as the phrase CLIP is asked about. Words it does not know are
kept, so a command in another language passes through as its own phrase.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_COMMAND_CHARS = 1000

SPATIAL_WORDS = ("left", "right", "top", "bottom", "center", "nearest", "farthest", "biggest", "smallest")
RELATION_WORDS = ("next to", "on", "under", "above", "behind", "in front of", "in", "near", "far from",
                  "left of", "right of", "between")

_EXAMPLE = "a command naming an object, e.g. 'pick the red mug' or 'grab the scissors on the left'"


@dataclass(frozen=True)
class Target:
    """What to look for. `phrase` is what CLIP scores; `spatial` picks among matches; `relation`/`anchor` are parsed
    but not used by selection yet."""

    phrase: str
    spatial: str | None = None
    relation: str | None = None
    anchor: str | None = None
    command: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.phrase, str) or not self.phrase.strip():
            raise ValueError(f"phrase={self.phrase!r} is empty; accepted: a non-empty object phrase like 'red mug'")
        if self.spatial is not None and self.spatial not in SPATIAL_WORDS:
            raise ValueError(f"spatial={self.spatial!r} is not supported; accepted: None, {', '.join(SPATIAL_WORDS)}")
        if self.relation is not None and self.relation not in RELATION_WORDS:
            raise ValueError(
                f"relation={self.relation!r} is not supported; accepted: None, {', '.join(RELATION_WORDS)}"
            )


def parse(command: str) -> Target:
    """Parse `command` into a Target; raises ValueError (TypeError for a non-str) saying what is accepted."""
    _check(command)
    tokens = _tokens(command)
    tokens = _cut_second_clause(tokens)
    tokens = _strip_leading_filler(tokens)
    tokens = _strip(tokens, _TRAILING, leading=False)

    spatial, relation, target_part, anchor_part = _scan(tokens)
    target_part = _strip(_strip(target_part, _DETERMINERS, leading=True), _TRAILING, leading=False)
    anchor_part = _strip(_strip(anchor_part, _DETERMINERS, leading=True), _TRAILING, leading=False)

    # Articles inside a phrase carry nothing for CLIP: "mug with the red handle" -> "mug with red handle".
    target_part = [t for t in target_part if t not in _ARTICLES]
    anchor_part = [t for t in anchor_part if t not in _ARTICLES]
    # "the red one" / "the leftmost one": CLIP needs a noun, and "object" is the neutral one. A bare "the one" says
    # nothing about which object, unless a qualifier or relation does.
    if target_part in (["one"], ["ones"]) and spatial is None and relation is None:
        target_part = []
    if target_part and target_part[-1] in ("one", "ones"):
        target_part = [*target_part[:-1], "object"]
    if not target_part and spatial is not None:
        target_part = ["object"]

    if not target_part or all(t in _NO_OBJECT for t in target_part):
        if relation is not None:
            raise ValueError(
                f"command={_short(command)} names only a reference object ({relation} {' '.join(anchor_part)!r}), "
                f"not the object to pick; accepted: {_EXAMPLE}"
            )
        raise ValueError(
            f"command={_short(command)} names no object once verbs, articles and politeness are removed; "
            f"accepted: {_EXAMPLE}"
        )
    if relation is not None and not anchor_part:
        raise ValueError(
            f"command={_short(command)} says {relation!r} but names no reference object after it; "
            f"accepted: {_EXAMPLE}, or 'the blue box next to the laptop'"
        )
    return Target(
        phrase=" ".join(target_part),
        spatial=spatial,
        relation=relation,
        anchor=" ".join(anchor_part) if anchor_part else None,
        command=command,
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


# --- tokens -------------------------------------------------------------------------------------------------------

# Words, numbers and hyphen/apostrophe compounds ("t-shirt", "john's"); \w covers every script.
_WORD = re.compile(r"\w+(?:['\-]\w+)*")
_CONTRACTIONS = {"where's": "where is", "what's": "what is", "that's": "that is", "it's": "it is",
                 "i'm": "i am", "i'd": "i would", "i'll": "i will", "can't": "cannot", "there's": "there is",
                 "which's": "which is", "here's": "here is"}


def _tokens(command: str) -> list[str]:
    text = unicodedata.normalize("NFC", command).lower().replace("\u2019", "'")
    out: list[str] = []
    for word in _WORD.findall(text):
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


# --- filler -------------------------------------------------------------------------------------------------------

_POLITE = _phrases("please", "kindly", "pls", "plz", "hey", "hi", "ok", "okay", "so", "now", "just", "robot",
                   "hello", "excuse me")
_OPENERS = _phrases(
    "can you", "could you", "would you", "will you", "can u", "could u", "would you mind", "would you be able to",
    "are you able to", "i would like you to", "i want you to", "i need you to", "go and", "go", "try to", "quickly",
    "first", "then", "and",
)
# One verb phrase is stripped, once, so "take the ice pick" keeps "ice pick" and "pick the pick" keeps "pick".
_VERBS = _phrases(
    "pick", "pick up", "take", "take up", "grab", "get", "fetch", "bring", "hand", "give", "find", "locate", "show",
    "point at", "point to", "look for", "search for", "where is", "where are", "i need", "i want", "i would like",
    "i am looking for", "looking for", "select", "choose", "lift", "lift up", "hold", "retrieve", "reach for",
    "go get", "go grab", "go fetch", "is there", "do you see", "can you see", "pass", "pass me", "identify",
    "detect", "highlight", "move", "collect", "show me where", "tell me where",
    # after "would you mind ..."
    "picking", "picking up", "taking", "grabbing", "getting", "fetching", "bringing", "handing", "giving", "passing",
    "finding",
)
_VERB_OBJECTS = _phrases("me", "us", "over", "up")
_DETERMINERS = _phrases("the", "a", "an", "that", "this", "these", "those", "some", "my", "your", "our", "one of",
                        "of", "any")
_ARTICLES = {"the", "a", "an"}
_TRAILING = _phrases(
    "please", "thanks", "thank you", "thank u", "for me", "for us", "up", "now", "right now", "again", "quickly",
    "over there", "there", "here", "right here", "right there", "that is", "which is", "that", "which", "sitting",
    "lying", "standing", "located", "placed", "if you can", "when you can", "is", "are",
)
# Words that stand for an object without naming it: "pick it up" gives CLIP nothing to look for.
_NO_OBJECT = {"it", "them", "something", "anything", "everything", "thing", "stuff"}
# "and put it in the box": the second clause is an instruction for after the pick, not part of the target.
_SECOND_CLAUSE_VERBS = {"put", "place", "give", "bring", "hand", "drop", "move", "hold", "set", "leave", "throw",
                        "pass", "carry", "lift", "pick", "take", "then"}


def _cut_second_clause(tokens: list[str]) -> list[str]:
    for i in range(1, len(tokens) - 1):
        if tokens[i] in ("and", "then") and tokens[i + 1] in _SECOND_CLAUSE_VERBS:
            return tokens[:i]
    return tokens


def _strip_leading_filler(tokens: list[str]) -> list[str]:
    tokens = _strip(tokens, _POLITE + _OPENERS, leading=True)
    n, _ = _match(tokens, 0, _VERB_TABLE)
    if n:
        tokens = _strip(tokens[n:], _VERB_OBJECTS + _POLITE, leading=True)
    return _strip(tokens, _DETERMINERS, leading=True)


# --- spatial qualifiers and relations -----------------------------------------------------------------------------


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


_SPATIAL_TABLE = _spatial_table()
_RELATION_TABLE = _relation_table()
_VERB_TABLE = {w: " ".join(w) for w in _VERBS}
_LONGEST = max(len(k) for k in (*_SPATIAL_TABLE, *_RELATION_TABLE, *_VERB_TABLE))
# Bare direction words are adjectives only before a noun: "the left mug" is spatial, "the bottle top" is a noun.
_ADJECTIVE_ONLY = {("left",): "left", ("right",): "right", ("top",): "top", ("upper",): "top",
                   ("bottom",): "bottom", ("lower",): "bottom", ("front",): "nearest", ("back",): "farthest"}
_NOT_A_NOUN = {"of", "here", "there", "now", "away", "the", "a", "an", "and"}
# "over" as a relation would swallow "over there"; "by" and "over" only count as relations before a determiner.
_NEEDS_DETERMINER_AFTER = {("by",), ("over",)}


def _scan(tokens: list[str]) -> tuple[str | None, str | None, list[str], list[str]]:
    """Left to right, longest match first: collect the first spatial qualifier, split at the first relation.

    Qualifiers inside the anchor part stay there ("next to the biggest box" describes the box, not the target).
    """
    spatial: str | None = None
    kept: list[str] = []
    i = 0
    while i < len(tokens):
        n_s, s = _match(tokens, i, _SPATIAL_TABLE)
        n_r, r = _match(tokens, i, _RELATION_TABLE)
        if r is not None and tuple(tokens[i:i + n_r]) in _NEEDS_DETERMINER_AFTER:
            nxt = tokens[i + n_r:i + n_r + 1]
            if not nxt or (nxt[0],) not in _DETERMINERS:
                n_r, r = 0, None
        if r is not None and n_r >= n_s:
            return spatial, r, kept, tokens[i + n_r:]
        if s is None and i + 1 < len(tokens) and tokens[i + 1] not in _NOT_A_NOUN:
            s = _ADJECTIVE_ONLY.get((tokens[i],))
            n_s = 1 if s else 0
        if s is not None:
            spatial = spatial or s  # the first qualifier wins; later ones are dropped from the phrase
            i += n_s
            continue
        kept.append(tokens[i])
        i += 1
    return spatial, None, kept, []
