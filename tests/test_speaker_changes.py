"""Speaker changes inside a final (rtasr/core/speaker_changes.py, speaker_finals.py): pieces
cut at pauses, on synthetic audio; change points and word labels, on synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from rtasr.core.protocol import Final, WireWord
from rtasr.core.speaker_changes import ChangeOptions, changes, pieces
from rtasr.core.speaker_finals import SpeakerFinals
from rtasr.errors import ConfigError

RATE = 16000
A, B, C = np.eye(192)[0], np.eye(192)[1], np.eye(192)[2]


def speech(*parts: tuple[str, float]) -> np.ndarray:
    """("talk", s) of seeded noise at speech level and ("pause", s) of silence, in turn."""
    rng = np.random.default_rng(0)
    return np.concatenate([
        (0.3 * rng.standard_normal(int(s * RATE))).astype(np.float32) if kind == "talk"
        else np.zeros(int(s * RATE), np.float32) for kind, s in parts])


def spans(audio: np.ndarray, **options: float) -> list[tuple[float, float]]:
    return [(p.start_s, p.end_s) for p in pieces(audio, ChangeOptions(**options))]


def test_speech_is_cut_at_its_pauses_less_its_quiet_head_and_tail() -> None:
    audio = speech(("pause", 0.3), ("talk", 1.0), ("pause", 0.3), ("talk", 1.2),
                   ("pause", 0.5))
    assert spans(audio) == [(0.3, 1.3), (1.6, 2.8)]
    first = pieces(audio)[0]
    assert len(first.audio) == RATE and first.duration_s == pytest.approx(1.0)


def test_a_gap_shorter_than_a_pause_does_not_cut() -> None:
    audio = speech(("talk", 1.0), ("pause", 0.1), ("talk", 1.0))
    assert spans(audio) == [(0.0, 2.1)]


def test_a_short_piece_joins_the_neighbour_across_its_shorter_pause() -> None:
    audio = speech(("talk", 1.0), ("pause", 0.4), ("talk", 0.2), ("pause", 0.2),
                   ("talk", 1.0))
    assert spans(audio) == [(0.0, 1.0), (1.4, 2.8)]


def test_pieces_are_capped_by_joining_across_the_shortest_pauses() -> None:
    audio = speech(("talk", 0.6), ("pause", 0.3), ("talk", 0.6), ("pause", 0.2),
                   ("talk", 0.6), ("pause", 0.4), ("talk", 0.6))
    assert spans(audio, max_pieces=2) == [(0.0, 2.3), (2.7, 3.3)]


def test_silence_is_one_piece() -> None:
    assert spans(np.zeros(RATE, np.float32)) == [(0.0, 1.0)]


def test_a_change_is_found_where_the_two_sides_differ() -> None:
    assert changes([1.0, 1.0, 1.0, 1.0], [A, A + 0.2 * B, B, B]) == [2]


def test_one_voice_throughout_has_no_change() -> None:
    assert changes([1.0, 0.7, 1.5], [A, A + 0.3 * B, A + 0.3 * C]) == []


def test_a_reply_and_the_answer_to_it_are_two_changes() -> None:
    assert changes([1.2, 1.0, 0.9, 1.1], [A, B, B, A]) == [1, 3]


def test_a_side_shorter_than_min_side_is_never_split_off() -> None:
    assert changes([0.5, 2.0], [A, B]) == []
    assert changes([0.5, 2.0], [A, B], ChangeOptions(min_side_s=0.5)) == [1]


def test_a_degenerate_embedding_is_refused() -> None:
    with pytest.raises(ValueError):
        changes([1.0, 1.0], [A, np.zeros(192)])


@pytest.mark.parametrize("options", [{"max_pieces": 0}, {"split_threshold": 2.0},
                                     {"known_split_threshold": -1.5}])
def test_bad_change_options_are_a_config_error(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ChangeOptions(**options)  # type: ignore[arg-type]


def words(*timed: tuple[str, float, float]) -> list[WireWord]:
    return [WireWord(word=w, start=s, end=e, probability=0.9) for w, s, e in timed]


RUN_ON = (("pause", 0.2), ("talk", 1.2), ("pause", 0.3), ("talk", 1.5), ("pause", 0.5))


def run_on_final() -> tuple[SpeakerFinals, Final]:
    """A final at 10 s on the stream's clock whose speech (RUN_ON) is "are you there" then,
    0.3 s later, "yes I am here", asked for its embeddings: two pieces."""
    final = Final(utterance=3, start=10.0, end=13.7, text="are you there yes I am here",
                  words=words(("are", 10.2, 10.5), ("you", 10.5, 10.9), ("there", 10.9, 11.4),
                              ("yes", 11.7, 12.0), ("I", 12.0, 12.2), ("am", 12.2, 12.6),
                              ("here", 12.6, 13.2)))
    finals = SpeakerFinals()
    job = finals.embed(3, speech(*RUN_ON), start_s=10.0)
    assert len(job.pieces) == 2
    assert finals.queue([final]) == []  # it waits for its embeddings
    return finals, final


def test_a_final_split_at_a_change_gives_each_word_the_speaker_of_its_side() -> None:
    finals, final = run_on_final()
    (out,) = finals.label(3, [A, B])
    assert [w.speaker for w in out.words] == [0, 0, 0, 1, 1, 1, 1]
    assert out.speaker == 1  # who said most of it
    assert out.text == final.text and out.utterance == 3
    assert finals.tracker.count == 2


def test_a_final_of_one_voice_in_pieces_keeps_one_speaker() -> None:
    finals, _ = run_on_final()
    (out,) = finals.label(3, [A, A + 0.3 * C])
    assert out.speaker == 0 and {w.speaker for w in out.words} == {0}
    assert finals.tracker.count == 1


def test_the_next_final_of_a_known_voice_gets_its_number_back() -> None:
    finals, _ = run_on_final()
    finals.label(3, [A, B])
    later = Final(utterance=4, start=20.0, end=21.0, text="right",
                  words=words(("right", 20.2, 20.8)))
    finals.embed(4, speech(("talk", 1.5)), start_s=20.0)
    finals.queue([later])
    (out,) = finals.label(4, [B + 0.2 * C])
    assert out.speaker == 1 and out.words[0].speaker == 1


def test_a_change_the_tracker_hears_as_one_voice_keeps_one_speaker() -> None:
    """Pieces unlike each other but both nearest the one speaker heard so far, the second
    too short to open a speaker: one speaker on every word."""
    finals = SpeakerFinals()
    final = Final(utterance=0, start=0.0, end=2.5, text="a b",
                  words=words(("a", 0.0, 1.2), ("b", 1.5, 2.4)))
    finals.embed(0, speech(("talk", 1.2), ("pause", 0.3), ("talk", 0.9)))
    finals.queue([final])
    (out,) = finals.label(0, [A, B])
    assert [w.speaker for w in out.words] == [0, 0] and out.speaker == 0


# two sides alike enough (cosine 0.63) that the voices alone split nothing
LIKE_A, LIKE_B = A + 0.3 * B + 0.5 * C, B + 0.3 * A + 0.5 * C


def test_a_final_splits_where_the_sessions_speakers_tell_its_sides_apart() -> None:
    """Two known speakers whose voices are too alike for the pieces alone to split the final:
    each side is nearer its own speaker, so each keeps its speaker (left whole, the mean would
    join one of them and pull its centroid toward the other)."""
    finals, _ = run_on_final()
    finals.tracker.enroll(A)
    finals.tracker.enroll(B)
    (out,) = finals.label(3, [LIKE_A, LIKE_B])
    assert [w.speaker for w in out.words] == [0, 0, 0, 1, 1, 1, 1]
    assert finals.tracker.count == 2


def test_a_reply_too_alike_to_split_by_voice_still_opens_a_speaker_apart_from_the_known_one(
) -> None:
    """One speaker known; the reply (1.5 s, long enough to open a speaker) is far from it but
    not far enough from the first side for the voices alone to split: it opens speaker 1."""
    finals, _ = run_on_final()
    finals.tracker.enroll(A)
    (out,) = finals.label(3, [LIKE_A, LIKE_B])
    assert [w.speaker for w in out.words] == [0, 0, 0, 1, 1, 1, 1]
    assert finals.tracker.count == 2


def test_sides_the_tracker_hears_as_one_known_speaker_stay_together() -> None:
    finals, _ = run_on_final()
    finals.tracker.enroll(A)
    (out,) = finals.label(3, [A + 0.3 * B, A + 0.3 * C])
    assert {w.speaker for w in out.words} == {0} and finals.tracker.count == 1


def test_a_side_too_short_to_open_a_speaker_and_unlike_every_one_does_not_split_off() -> None:
    """One speaker known (A); a final of another voice whose first piece (0.8 s) is too short
    to open a speaker: it is no clear outcome of its own, so the final stays whole and opens
    one new speaker (cut there, the first piece would join A for want of another choice)."""
    D, E = np.eye(192)[3], np.eye(192)[4]
    finals = SpeakerFinals()
    finals.tracker.enroll(A)
    final = Final(utterance=0, start=0.0, end=2.8, text="a b",
                  words=words(("a", 0.1, 0.8), ("b", 1.2, 2.5)))
    finals.embed(0, speech(("talk", 0.8), ("pause", 0.3), ("talk", 1.5)))
    finals.queue([final])
    (out,) = finals.label(0, [C + 0.7 * D, C + 0.7 * E])
    assert [w.speaker for w in out.words] == [1, 1] and finals.tracker.count == 2


def test_a_short_side_that_sounds_like_another_known_speaker_does_not_split_off() -> None:
    """Two known speakers; a final whose first piece (0.62 s: a few words, a noisy voice
    print) is nearer A while the rest (3 s), and the whole, are B's: the short side is too
    little voice to differ from the whole's speaker, so every word is B's."""
    finals = SpeakerFinals()
    finals.tracker.enroll(A)
    finals.tracker.enroll(B)
    final = Final(utterance=0, start=0.0, end=4.0, text="a b",
                  words=words(("a", 0.1, 0.6), ("b", 1.0, 3.8)))
    finals.embed(0, speech(("talk", 0.62), ("pause", 0.3), ("talk", 3.0)))
    finals.queue([final])
    (out,) = finals.label(0, [LIKE_A, LIKE_B])
    assert [w.speaker for w in out.words] == [1, 1]
