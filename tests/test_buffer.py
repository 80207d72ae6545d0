from __future__ import annotations

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.core.buffer import RingBuffer, Segmenter, SpeechEnded, SpeechPaused, SpeechStarted

from .helpers import clip_at, silence


def test_ring_buffer_keeps_the_newest_samples_and_forgets_the_rest() -> None:
    ring = RingBuffer(10)
    ring.append(np.arange(7, dtype=np.float32))
    ring.append(np.arange(7, 14, dtype=np.float32))
    assert ring.read(4, 14).tolist() == list(range(4, 14))  # across the wrap
    with pytest.raises(IndexError):  # overwritten
        ring.read(2, 6)
    held = ring.read(12, 14)
    ring.discard_before(12)
    with pytest.raises(IndexError):  # discarded, though not yet overwritten
        ring.read(11, 14)
    ring.append(np.arange(100, dtype=np.float32))  # larger than capacity: keeps the newest
    assert held.tolist() == [12, 13]  # what was read is a copy
    assert ring.read(ring.end - 3, ring.end).tolist() == [97, 98, 99]
    ring.append(np.arange(13, dtype=np.float32))  # not a multiple of the capacity
    assert ring.read(ring.end - 10, ring.end).tolist() == list(range(3, 13))


def push_all(seg: Segmenter, audio: np.ndarray, chunk: int = 1600) -> list[object]:
    events: list[object] = []
    for i in range(0, len(audio), chunk):
        events += seg.push(audio[i : i + chunk])
    return events


def test_silence_noise_never_open_an_utterance() -> None:
    seg = Segmenter(Config())
    quiet = np.random.default_rng(1).normal(0, 3e-4, 16000 * 5).astype(np.float32)
    assert push_all(seg, np.concatenate([silence(5, 16000), quiet])) == []
    assert len(seg.buffer) < 16000  # only the pre-roll is kept outside speech


def test_two_utterances_with_preroll_pause_and_endpoint() -> None:
    speech = clip_at("tt-weasels", 16000)
    audio = np.concatenate([silence(1, 16000), speech, silence(1.2, 16000), speech,
                            silence(1, 16000)])
    events = push_all(Segmenter(Config()), audio)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("SpeechStarted") == 2 and kinds.count("SpeechEnded") == 2
    first = next(e for e in events if isinstance(e, SpeechStarted))
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    onset = 16000 + np.flatnonzero(np.abs(speech) > 0.02)[0]
    assert first.start <= onset  # the pre-roll keeps the first phoneme
    assert ended[0].end <= 16000 + len(speech) + 16000 * 0.3
    assert ended[0].end - ended[0].start == len(ended[0].audio)
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    assert {(p.start, p.end) for p in paused} >= {(e.start, e.end) for e in ended}


def test_flush_ends_the_open_utterance() -> None:
    seg = Segmenter(Config())
    push_all(seg, np.concatenate([silence(0.5, 16000), clip_at("tt-weasels", 16000)[:16000]]))
    assert seg.open_utterance is not None
    ended = seg.flush()
    assert ended is not None and ended.end == seg.position
    assert seg.open_utterance is None and seg.flush() is None


def test_memory_is_bounded_on_endless_speech() -> None:
    config = Config()
    seg = Segmenter(config)
    speech = clip_at("agent-alreadyon", 16000)
    loud = np.tile(speech[np.abs(speech) > 0.0][:16000], 70)  # 70 s of speech, no pauses
    events = push_all(seg, loud)
    assert len(seg.buffer) <= config.max_buffer_s * 16000
    forced = [e for e in events if isinstance(e, SpeechEnded) and e.forced]
    assert forced, "the hard limit must end an utterance that never pauses"
    assert all(e.end - e.start <= config.max_buffer_s * 16000 for e in forced)


def test_cut_opens_the_next_utterance_at_the_cut() -> None:
    seg = Segmenter(Config())
    push_all(seg, np.concatenate([silence(0.5, 16000), clip_at("agent-alreadyon", 16000)[:48000]]))
    first = seg.open_utterance
    assert first is not None
    at = first.start + 16000
    started = seg.cut(at)
    assert started == SpeechStarted(first.index + 1, at)
    assert seg.buffer.start == at
    with pytest.raises(ValueError):
        seg.cut(at)


def test_speech_after_a_flush_reopens_after_the_flushed_audio() -> None:
    """A flush in the middle of speech: the next utterance starts where the flushed one
    ended, not at its onset minus the pre-roll, so no audio is in two utterances."""
    seg = Segmenter(Config())
    speech = clip_at("agent-alreadyon", 16000)
    events = seg.push(np.concatenate([silence(0.5, 16000), speech[: len(speech) // 2]]))
    ended = seg.flush()
    assert ended is not None
    events = seg.push(speech[len(speech) // 2 :])
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert started and started[0].start >= ended.end

