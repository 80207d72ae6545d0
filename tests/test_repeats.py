"""Decoding loops: cut where a phrase starts repeating, not dropped whole (repeats.py)."""

from __future__ import annotations

from rtasr.engine.repeats import collapse_phrases, cut_loop, doubled_tail

PRESS = [5, 6, 7, 8, 9, 10]  # "Press 2 to change folders."
OPTIONS = [11, 12, 13, 14, 15, 16]  # "Press 0 for mailbox options."


def test_a_loop_after_real_words_keeps_them_and_one_copy() -> None:
    assert cut_loop(PRESS + OPTIONS * 30) == PRESS + OPTIONS


def test_a_loop_cut_off_inside_its_phrase_by_the_token_limit() -> None:
    assert cut_loop(PRESS + OPTIONS * 30 + OPTIONS[:4]) == PRESS + OPTIONS


def test_the_copy_kept_ends_with_its_sentence() -> None:
    """ "advanced options. | Press 0 for mailbox options." repeating: periodic from the first
    "options", but the copy kept is the sentence."""
    options = [11, 12, 13, 14, 20, 21]  # " Press", " 0", " for", " mailbox", " options", "."
    advanced = [5, 6, 7, 8, 9, 30, 20, 21]  # "... Press 3 for advanced options."
    tokens = advanced + options * 20 + options[:3]
    assert cut_loop(tokens) == advanced + options[:4]  # no sentences known: the period
    assert cut_loop(tokens, lambda t: t == 21) == advanced + options


def test_a_decode_that_is_nothing_but_a_loop_is_dropped() -> None:
    """Music heard as "Thank you. Thank you. ...": no words came before the loop."""
    assert cut_loop([3, 4] * 100) == []


def test_a_loop_after_a_leading_timestamp_is_still_nothing_but_a_loop() -> None:
    """With timestamp tokens a decode begins with <|0.00|>: a hallucinated "Thank you.
    Thank you. ..." after it has no words before it either, and is dropped."""
    timestamp = 50364
    special = lambda t: t >= 50257  # noqa: E731
    assert cut_loop([timestamp] + [3, 4] * 100, special=special) == []
    assert cut_loop([timestamp, *PRESS, *OPTIONS * 30], special=special) == [
        timestamp, *PRESS, *OPTIONS]


def test_words_repeated_less_than_three_times_are_no_loop() -> None:
    tokens = PRESS + OPTIONS + OPTIONS + [1, 2]
    assert cut_loop(tokens) == tokens


def test_words_after_a_repetition_are_no_loop_unless_they_begin_it_again() -> None:
    said = PRESS + OPTIONS * 3 + [1, 2]  # "Press 0 ..." said three times, then more words
    assert cut_loop(said) == said


def test_collapse_phrases_keeps_one_of_a_phrase_said_four_times_or_more() -> None:
    assert collapse_phrases("Thank you. Thank you. Thank you. Thank you. Bye.") == (
        "Thank you. Bye.")
    assert collapse_phrases("no no no stop") == "no no no stop"


def timed(text: str, start: float, seconds_per_word: float) -> list[tuple[str, float, float]]:
    return [(f" {w}", start + i * seconds_per_word, start + (i + 1) * seconds_per_word)
            for i, w in enumerate(text.split())]


MATCH = timed("did not match.", 2.1, 0.35)


def test_a_last_sentence_doubled_in_no_time_is_dropped() -> None:
    """vm-mismatch without timestamp tokens: the second "Please try again." aligned to 4.48 s,
    start and end, for every word."""
    said = timed("Please try again.", 3.4, 0.34)
    unsaid = timed("Please try again.", 4.48, 0.0)
    assert doubled_tail(MATCH + said + unsaid) == 3


def test_a_sentence_said_twice_is_kept() -> None:
    words = MATCH + timed("Please try again.", 3.4, 0.34) + timed("please try again!", 4.6, 0.3)
    assert doubled_tail(words) == 0


def test_only_a_repeat_of_the_sentence_before_counts() -> None:
    assert doubled_tail(MATCH + timed("Please try again.", 3.4, 0.0)) == 0
    assert doubled_tail(timed("Please try again.", 0.0, 0.0)) == 0  # one sentence alone
    assert doubled_tail(MATCH + timed("Please try", 3.4, 0.0)) == 0  # no sentence end
    assert doubled_tail([]) == 0


def test_every_copy_squeezed_into_no_time_is_dropped() -> None:
    """conf-userswilljoin (1.8 s) with a session prompt, without timestamp tokens: "Users will
    join the conference." three times, the second and third copies at 1.56-1.56 s."""
    said = timed("Users will join the conference.", 0.0, 0.3)
    unsaid = timed("Users will join the conference.", 1.56, 0.0)
    assert doubled_tail(said + unsaid + unsaid) == 10
    twice = said + timed("Users will join the conference.", 1.6, 0.3)
    assert doubled_tail(twice + unsaid) == 5  # the one said twice stays twice
