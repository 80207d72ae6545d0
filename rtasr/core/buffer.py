"""Per-connection audio memory and utterance segmentation (sans-I/O: numpy in, events out).

`RingBuffer` is a preallocated, fixed-capacity store of the stream's most recent 16 kHz audio,
addressed by absolute sample index. `Segmenter` runs WebRTC VAD over the stream frame by frame
and turns runs of speech and silence into utterance events: it opens an utterance with a
pre-roll so the first phoneme is kept, reports a short pause (the moment a speculative final
decode can start), and ends the utterance after the endpoint silence. Audio outside an open
utterance is dropped as soon as it is older than the pre-roll, so non-speech never reaches the
model and a connection never holds more than the buffer's capacity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import SAMPLE_RATE_HZ, Config
from .audio import Audio
from .vad import FrameVad


class RingBuffer:
    """The last `capacity` samples of a stream, by absolute sample index."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, np.float32)
        self.capacity = capacity
        self.start = 0  # absolute index of the oldest sample held
        self.end = 0  # absolute index one past the newest sample

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, samples: Audio) -> None:
        """Append samples; beyond capacity the oldest are overwritten (and `start` moves)."""
        n = len(samples)
        if n > self.capacity:  # only the newest `capacity` are kept, at their own positions
            samples = samples[n - self.capacity :]
        at = (self.end + n - len(samples)) % self.capacity
        first = min(len(samples), self.capacity - at)
        self._data[at : at + first] = samples[:first]
        self._data[: len(samples) - first] = samples[first:]
        self.end += n
        self.start = max(self.start, self.end - self.capacity)

    def read(self, start: int, end: int) -> Audio:
        """A copy of samples [start, end), which must still be held."""
        if not self.start <= start <= end <= self.end:
            raise IndexError(f"[{start}, {end}) is outside the buffer [{self.start}, {self.end})")
        a, b = start % self.capacity, end % self.capacity
        if end - start == 0:
            return np.zeros(0, np.float32)
        if a < b:
            return self._data[a:b].copy()
        return np.concatenate([self._data[a:], self._data[:b]])

    def discard_before(self, index: int) -> None:
        self.start = min(max(self.start, index), self.end)


@dataclass(frozen=True)
class SpeechStarted:
    utterance: int
    start: int


@dataclass(frozen=True)
class SpeechPaused:
    """Silence reached `pause_ms`: `end` is where the utterance would end if it stays silent."""

    utterance: int
    start: int
    end: int
    audio: Audio = field(repr=False, compare=False)


@dataclass(frozen=True)
class SpeechResumed:
    utterance: int


@dataclass(frozen=True)
class SpeechEnded:
    utterance: int
    start: int
    end: int
    audio: Audio = field(repr=False, compare=False)
    forced: bool = False


SegmentEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded


@dataclass
class _Open:
    index: int
    start: int
    last_voiced_end: int
    paused: bool = False


class Segmenter:
    """Turns a stream of 16 kHz audio into utterances with WebRTC VAD."""

    def __init__(self, config: Config) -> None:
        self._vad = FrameVad(config.vad_aggressiveness, config.vad_frame_ms)
        self._frame_samples = config.frame_samples
        self.retune(config)
        self._hard_limit_samples = int((config.max_buffer_s - 1.0) * SAMPLE_RATE_HZ)
        self.buffer = RingBuffer(int(config.max_buffer_s * SAMPLE_RATE_HZ))
        self._framed = 0  # absolute index up to which frames were classified
        self._voiced_run = 0
        self._silence_samples = 0  # samples of non-speech since the last voiced frame
        self._open: _Open | None = None
        self._next_index = 0
        self._closed_end = 0  # where the last utterance ended: the next never starts before it

    def retune(self, config: Config) -> None:
        """Take `config`'s speech start, pre-roll, pause and endpoint silence from the next
        frame on (the VAD and the buffer's size stay)."""
        ms = SAMPLE_RATE_HZ // 1000
        self._start_frames = max(1, -(-config.speech_start_ms // config.vad_frame_ms))
        self._preroll_samples = config.preroll_ms * ms
        self._pause_samples = config.pause_ms * ms
        self._endpoint_samples = config.endpoint_silence_ms * ms

    @property
    def position(self) -> int:
        """Absolute index one past the newest sample received."""
        return self.buffer.end

    @property
    def open_utterance(self) -> _Open | None:
        return self._open

    def push(self, samples: Audio) -> list[SegmentEvent]:
        self.buffer.append(samples)
        events: list[SegmentEvent] = []
        while self._framed + self._frame_samples <= self.buffer.end:
            frame = self.buffer.read(self._framed, self._framed + self._frame_samples)
            self._framed += self._frame_samples
            self._classify(self._vad.is_speech(frame), events)
        if self._open is None:
            keep = self._preroll_samples + (self._voiced_run + 1) * self._frame_samples
            self.buffer.discard_before(self.buffer.end - keep)
        return events

    def _classify(self, voiced: bool, events: list[SegmentEvent]) -> None:
        frame_end = self._framed
        utt = self._open
        if utt is None:
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= self._start_frames:
                onset = frame_end - self._voiced_run * self._frame_samples
                start = max(self.buffer.start, onset - self._preroll_samples, self._closed_end)
                self._open = _Open(self._next_index, start, frame_end)
                self._next_index += 1
                self._silence_samples = 0
                events.append(SpeechStarted(self._open.index, start))
            return
        if voiced:
            utt.last_voiced_end = frame_end
            self._silence_samples = 0
            if utt.paused:
                utt.paused = False
                events.append(SpeechResumed(utt.index))
        else:
            self._silence_samples += self._frame_samples
            if self._silence_samples >= self._pause_samples and not utt.paused:
                utt.paused = True
                end = self._tail_end(utt)
                audio = self.buffer.read(utt.start, end)
                events.append(SpeechPaused(utt.index, utt.start, end, audio))
            if self._silence_samples >= self._endpoint_samples:
                events.append(self._close(self._tail_end(utt)))
                return
        if frame_end - utt.start >= self._hard_limit_samples:
            events.append(self._close(frame_end, forced=True))

    def _tail_end(self, utt: _Open) -> int:
        return min(utt.last_voiced_end + self._pause_samples, self.buffer.end)

    def _close(self, end: int, *, forced: bool = False) -> SpeechEnded:
        assert self._open is not None
        utt, self._open = self._open, None
        self._voiced_run = 0
        end = max(end, utt.start)
        self._closed_end = end
        return SpeechEnded(utt.index, utt.start, end, self.buffer.read(utt.start, end), forced)

    def flush(self) -> SpeechEnded | None:
        """End the open utterance now (the client's flush, or the end of the stream)."""
        utt = self._open
        if utt is None:
            return None
        end = self._tail_end(utt) if utt.paused else self.buffer.end
        return self._close(end, forced=True)

    def cut(self, at: int, keep: int = 0) -> SpeechStarted:
        """Close the open utterance at sample `at` and open the next one there (`keep`: the
        samples before `at` that stay readable, as context for the next one's decodes)."""
        utt = self._open
        if utt is None or not utt.start < at <= self.buffer.end:
            raise ValueError("cut point outside the open utterance")
        self._open = _Open(self._next_index, at, max(utt.last_voiced_end, at), utt.paused)
        self._next_index += 1
        self.buffer.discard_before(at - keep)
        return SpeechStarted(self._open.index, at)
