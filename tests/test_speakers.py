"""The online speaker tracker (rtasr/core/speakers.py) on synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from rtasr.core.speakers import SpeakerOptions, SpeakerTracker
from rtasr.errors import ConfigError

DIM = 192


def voices(count: int, seed: int = 0) -> np.ndarray:
    """`count` well-separated unit directions (random in 192 dimensions: nearly orthogonal)."""
    v = np.random.default_rng(seed).normal(size=(count, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def turn(voice: np.ndarray, rng: np.random.Generator, noise: float = 0.5) -> np.ndarray:
    """One turn's embedding: the voice plus noise (cosine ~0.8 to the voice at noise 0.5)."""
    return voice + rng.normal(scale=noise / np.sqrt(DIM), size=DIM)


def test_alternating_speakers_get_stable_numbers_in_order_of_appearance() -> None:
    rng = np.random.default_rng(1)
    v = voices(3)
    order = [0, 1, 0, 2, 1, 1, 2, 0, 2, 0]
    tracker = SpeakerTracker()
    labels = [tracker.assign(turn(v[k], rng), 2.0).speaker for k in order]
    assert labels == order
    assert tracker.count == 3


def test_a_new_voice_opens_a_speaker_and_says_so() -> None:
    rng = np.random.default_rng(2)
    v = voices(2)
    tracker = SpeakerTracker()
    first = tracker.assign(turn(v[0], rng), 2.0)
    again = tracker.assign(turn(v[0], rng), 2.0)
    other = tracker.assign(turn(v[1], rng), 2.0)
    assert (first.new, again.new, other.new) == (True, False, True)
    assert again.similarity >= SpeakerOptions().threshold
    assert tracker.assign(turn(v[1], rng), 2.0).speaker == other.speaker == 1


def test_a_short_turn_joins_its_nearest_speaker_and_leaves_the_centroid() -> None:
    rng = np.random.default_rng(3)
    v = voices(2)
    tracker = SpeakerTracker(SpeakerOptions(min_new_s=1.0, min_update_s=0.5))
    tracker.assign(turn(v[0], rng), 2.0)
    before = tracker._speakers[0].total.copy()
    short = tracker.assign(turn(v[1], rng), 0.4)  # a new voice, too short to open a speaker
    assert (short.speaker, short.new) == (0, False)
    assert np.array_equal(tracker._speakers[0].total, before)
    assert tracker.assign(turn(v[1], rng), 1.2).new


def test_speakers_are_capped_and_memory_stays_bounded() -> None:
    rng = np.random.default_rng(4)
    v = voices(6)
    tracker = SpeakerTracker(SpeakerOptions(max_speakers=3))
    labels = [tracker.assign(turn(v[k % 6], rng), 2.0).speaker for k in range(600)]
    assert tracker.count == 3
    assert set(labels) == {0, 1, 2}
    assert all(s.total.shape == (DIM,) for s in tracker._speakers)


def test_the_first_turn_opens_speaker_zero_however_short() -> None:
    tracker = SpeakerTracker()
    assert tracker.assign(voices(1)[0], 0.2).speaker == 0


@pytest.mark.parametrize("bad", [np.zeros(DIM), np.full(DIM, np.nan)])
def test_an_empty_embedding_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        SpeakerTracker().assign(bad, 2.0)


@pytest.mark.parametrize("options", [{"threshold": 1.5}, {"max_speakers": 0}])
def test_bad_options_are_a_config_error(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SpeakerOptions(**options)  # type: ignore[arg-type]


def test_a_turn_unlike_every_speaker_that_cannot_open_one_leaves_the_centroids_alone() -> None:
    """A turn long enough to move a centroid but too short to open a speaker joins its
    nearest one for its label only: a stray voice never drags a centroid toward itself."""
    rng = np.random.default_rng(5)
    v = voices(2)
    tracker = SpeakerTracker(SpeakerOptions(min_new_s=1.0, min_update_s=0.5))
    tracker.assign(turn(v[0], rng), 2.0)
    before = tracker._speakers[0].total.copy()
    stray = tracker.assign(turn(v[1], rng), 0.8)
    assert (stray.speaker, stray.new) == (0, False)
    assert stray.similarity < SpeakerOptions().threshold
    assert np.array_equal(tracker._speakers[0].total, before)
    assert tracker.assign(turn(v[0], rng), 0.8).similarity >= SpeakerOptions().threshold


def test_a_voice_heard_while_speakers_are_capped_does_not_move_their_centroids() -> None:
    rng = np.random.default_rng(6)
    v = voices(3)
    tracker = SpeakerTracker(SpeakerOptions(max_speakers=2))
    tracker.assign(turn(v[0], rng), 2.0)
    tracker.assign(turn(v[1], rng), 2.0)
    before = [s.total.copy() for s in tracker._speakers]
    for _ in range(20):
        tracker.assign(turn(v[2], rng), 2.0)
    assert all(np.array_equal(s.total, b) for s, b in zip(tracker._speakers, before,
                                                          strict=True))
    assert tracker.assign(turn(v[0], rng), 2.0).speaker == 0
