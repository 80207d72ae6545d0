"""`speaker_confidence`: how clearly a turn's voice chose its speaker (core/speakers.py), as
the tracker and the finals (speaker_finals.py) hand it to the words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtasr.core.protocol import Final, WireWord
from rtasr.core.speaker_finals import SpeakerFinals
from rtasr.core.speakers import SpeakerTracker, speaker_confidence

THRESHOLD = 0.62


def voice(*weights: float) -> np.ndarray:
    return np.array([*weights, *[0.0] * (192 - len(weights))])


@pytest.mark.parametrize(("similarities", "speaker", "expected"), [
    ([], 0, 1.0),  # the first turn: no other outcome
    ([0.9, 0.3], 0, 0.5 + 0.9 - THRESHOLD),  # the threshold is the nearest rival
    ([0.9, 0.8], 0, 0.6),  # another speaker is the nearest rival
    ([0.5, 0.1], 0, 0.5 + 0.5 - THRESHOLD),  # a short turn kept below the threshold: < 0.5
    ([0.2, 0.3], 2, 0.5 + THRESHOLD - 0.3),  # a new speaker: margin below the threshold
    ([0.61], 1, 0.51),  # a new speaker, barely: on the edge
    ([1.0], 0, 0.88),
    ([-1.0], 1, 1.0),  # clipped
])
def test_the_margin_to_the_nearest_other_outcome(similarities: list[float], speaker: int,
                                                 expected: float) -> None:
    got = speaker_confidence(np.array(similarities), speaker, THRESHOLD)
    assert got == pytest.approx(expected, abs=1e-3)
    assert 0.0 <= got <= 1.0


def test_similarities_read_the_centroids_and_change_nothing() -> None:
    tracker = SpeakerTracker()
    assert tracker.similarities(voice(1)).shape == (0,)
    tracker.assign(voice(1), 2.0)
    tracker.assign(voice(0, 1), 2.0)
    before = tracker.similarities(voice(1, 1))
    assert before == pytest.approx([2 ** -0.5, 2 ** -0.5])
    assert tracker.similarities(voice(1, 1)) == pytest.approx(before)
    assert tracker.count == 2


def test_each_word_carries_its_turns_confidence_and_the_json_says_so() -> None:
    finals = SpeakerFinals()
    words = [WireWord(word="hi", start=0.0, end=1.0, probability=0.9),
             WireWord(word="there", start=1.0, end=2.0, probability=0.9)]
    turns = [Final(utterance=u, start=0.0, end=2.0, text="hi there", words=words)
             for u in range(3)]
    speech = np.full(2 * 16000, 0.1, np.float32)  # 2 s of voice: long enough to open a speaker
    for u in range(3):
        finals.embed(u, speech)
    finals.queue(turns)
    out = [*finals.label(0, voice(1)), *finals.label(1, voice(1, 2)),
           *finals.label(2, voice(1, 0.2))]
    assert [f.speaker for f in out] == [0, 1, 0]
    confidences = [{w.speaker_confidence for w in f.words} for f in out]
    assert confidences[0] == {1.0}  # the first turn
    (second,) = confidences[1]  # a new speaker: cosine 1/sqrt(5) to speaker 0
    assert second == pytest.approx(0.5 + THRESHOLD - 5 ** -0.5, abs=1e-3)
    (third,) = confidences[2]
    assert third == pytest.approx(0.5 + 1 / np.hypot(1, 0.2) - THRESHOLD, abs=1e-3)
    data = json.loads(out[2].to_json())
    assert [w["speaker_confidence"] for w in data["words"]] == [third, third]
