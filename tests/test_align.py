"""Where one word list ends inside another (align.py)."""

from __future__ import annotations

from rtasr.core.align import context_end


def _words(text: str) -> list[str]:
    return text.split()


def test_the_context_ends_where_its_last_words_do_whatever_the_spelling() -> None:
    said = ["Dial", "4", "to", "record."]
    words = ["dial", "four", "to", "record,", "press", "5", "to", "hear"]
    assert context_end(said, words) == (4, 0)


def test_a_decode_may_hold_words_before_the_context_s_words() -> None:
    said = ["helpful", "debugging", "information", "on", "the", "console."]
    words = _words("You may find some helpful debugging information on the console. You have")
    assert context_end(said, words) == (10, 0)


def test_the_earliest_of_equal_matches_is_the_context_s() -> None:
    assert context_end(["Press", "1."], _words("Press 1. Press 1 again."))[0] == 2


def test_a_decode_that_lacks_the_context_s_words_matches_them_badly() -> None:
    said = ["the", "conference", "is", "now", "locked."]
    _, edits = context_end(said, ["goodbye."])
    assert edits * 4 > sum(len(w) for w in "theconferenceisnowlocked")
    assert context_end([], ["a"]) == (0, 0)
