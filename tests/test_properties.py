"""Property-based tests (hypothesis): the PCM decoder and the segmenter, on any input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtasr.config import Config
from rtasr.core.audio import PcmDecoder, decode_pcm
from rtasr.core.buffer import (
    RingBuffer,
    Segmenter,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
)
from rtasr.errors import AudioFormatError

from .helpers import clip_at

SPEECH = clip_at("agent-alreadyon", 16000)


def splits(data: bytes, cuts: list[int], width: int) -> list[bytes]:
    """`data` cut at `cuts` (rounded to whole samples of `width` bytes)."""
    points = sorted({min(len(data), c - c % width) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.binary(max_size=4000))
def test_any_bytes_decode_or_raise_audio_format_error(data: bytes) -> None:
    for encoding, width in (("pcm_s16le", 2), ("pcm_f32le", 4), ("mulaw", 1), ("alaw", 1)):
        try:
            samples = decode_pcm(data, encoding)  # type: ignore[arg-type]
        except AudioFormatError:
            assert len(data) % width or encoding == "pcm_f32le"
            continue
        assert len(samples) == len(data) // width and samples.dtype == np.float32
        assert np.isfinite(samples).all() and np.abs(samples).max(initial=0) <= 1.0


@given(st.lists(st.floats(width=32), max_size=200))
def test_float_frames_with_nan_or_inf_are_refused(values: list[float]) -> None:
    data = np.array(values, "<f4").tobytes()
    if np.isfinite(values).all():
        assert np.abs(decode_pcm(data, "pcm_f32le")).max(initial=0) <= 1.0
    else:
        with pytest.raises(AudioFormatError):
            decode_pcm(data, "pcm_f32le")


@settings(max_examples=40, deadline=None)
@given(rate=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
       seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(0, 20000), max_size=12))
def test_decoding_in_any_frames_equals_decoding_at_once(rate: int, seed: int,
                                                        cuts: list[int]) -> None:
    pcm = np.random.default_rng(seed).integers(-32768, 32767, 5000, dtype=np.int16)
    data = pcm.astype("<i2").tobytes()
    whole = PcmDecoder(rate, "pcm_s16le")
    expected = np.concatenate([whole.decode(data), whole.flush()])
    parts = PcmDecoder(rate, "pcm_s16le")
    got = np.concatenate([*(parts.decode(p) for p in splits(data, cuts, 2)), parts.flush()])
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert parts.duration_s == pytest.approx(5000 / rate)


@given(capacity=st.integers(1, 50),
       steps=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 60)), max_size=12),
       data=st.data())
def test_ring_buffer_reads_back_any_held_range_after_any_appends(
        capacity: int, steps: list[tuple[int, int]], data: st.DataObject) -> None:
    """Appends of any size (past the capacity too) and discards, in any order: any range still
    held reads back the stream's own samples, across the wrap; a range reaching outside what
    is held raises; and a read is a copy that later appends leave as it was."""
    ring = RingBuffer(capacity)
    stream = np.arange(sum(n for n, _ in steps), dtype=np.float32)
    at = 0
    reads: list[tuple[int, int, np.ndarray]] = []
    for n, drop in steps:
        ring.append(stream[at : at + n])
        at += n
        ring.discard_before(ring.start + drop)
        start = data.draw(st.integers(ring.start, ring.end))
        end = data.draw(st.integers(start, ring.end))
        got = ring.read(start, end)
        assert got.tolist() == stream[start:end].tolist()
        reads.append((start, end, got))
        with pytest.raises(IndexError):
            ring.read(ring.start - 1, ring.end) if ring.start else ring.read(0, ring.end + 1)
    for start, end, got in reads:
        assert got.tolist() == stream[start:end].tolist()


segment = st.tuples(st.sampled_from(["speech", "silence", "noise"]), st.floats(0.02, 4.0))


@settings(max_examples=30, deadline=None)
@given(segments=st.lists(segment, min_size=1, max_size=8), chunk=st.integers(1, 8000),
       seed=st.integers(0, 1000))
def test_segmenter_events_are_well_formed(segments: list[tuple[str, float]], chunk: int,
                                          seed: int) -> None:
    config = Config(max_utterance_s=6.0, commit_cut_s=4.0, max_buffer_s=12.0)
    rng = np.random.default_rng(seed)
    parts = []
    for kind, seconds in segments:
        n = int(seconds * 16000)
        if kind == "speech":
            at = rng.integers(0, len(SPEECH) - 1)
            parts.append(np.resize(np.roll(SPEECH, -at), n))
        elif kind == "noise":
            parts.append(rng.normal(0, 0.05, n).astype(np.float32))
        else:
            parts.append(np.zeros(n, np.float32))
    audio = np.concatenate(parts)
    seg = Segmenter(config)
    events = []
    for i in range(0, len(audio), chunk):
        events += seg.push(audio[i : i + chunk])
        assert len(seg.buffer) <= config.max_buffer_s * 16000  # memory is bounded
    ended = seg.flush()
    events += [ended] if ended is not None else []

    open_index: int | None = None
    last_index = -1
    for event in events:
        if isinstance(event, SpeechStarted):
            assert open_index is None and event.utterance == last_index + 1
            open_index = last_index = event.utterance
        elif isinstance(event, SpeechPaused | SpeechResumed):
            assert event.utterance == open_index
        elif isinstance(event, SpeechEnded):
            assert event.utterance == open_index
            assert 0 <= event.start <= event.end <= len(audio)
            assert len(event.audio) == event.end - event.start
            assert event.end - event.start <= config.max_buffer_s * 16000
            open_index = None
    assert open_index is None  # flush closed whatever was open
