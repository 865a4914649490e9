"""Property-based tests (hypothesis) of command parsing: any text parses into a valid Target or is refused with the
documented ValueError whose message says what is accepted; a plain 'take the <object>' names that object."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is pinned in requirements.lock; run make setup")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from promptbox.command import MAX_COMMAND_CHARS, Target, parse  # noqa: E402
from promptbox.vocabulary import OBJECT_NAMES  # noqa: E402

PROPERTIES = settings(max_examples=300, deadline=None)
WORDS = st.sampled_from(["take", "the", "red", "mug", "on", "left", "please", "not", "scissors", "second", "of",
                         "next", "to", "and", "it", "top", "cup", "a", "2", "all", "é", "🙂", "\x00", "\t", "ñ"])


def _parses_or_says_why(command: str) -> Target | None:
    try:
        target = parse(command)
    except ValueError as error:
        assert "accepted" in str(error), str(error)
        return None
    assert isinstance(target, Target) and target.phrase.strip()
    return target


@PROPERTIES
@given(st.text(max_size=MAX_COMMAND_CHARS + 20))
def test_any_text_parses_or_is_refused_with_a_reason(command):
    _parses_or_says_why(command)


@PROPERTIES
@given(st.lists(WORDS, max_size=12).map(" ".join))
def test_any_sentence_of_command_words_parses_or_is_refused_with_a_reason(command):
    _parses_or_says_why(command)


@PROPERTIES
@given(st.sampled_from(sorted(OBJECT_NAMES)), st.sampled_from(["take the {}", "grab the {}", "the {}",
                                                                "please pick up the {}", "Take The {}."]))
def test_a_plain_command_names_its_object(name, template):
    target = parse(template.format(name))
    assert target.phrase == name and target.spatial is None and target.relation is None


@PROPERTIES
@given(st.binary(max_size=40))
def test_bytes_are_a_type_error(command):
    with pytest.raises(TypeError, match="decode bytes first"):
        parse(command)
