"""What a `Session` asks of its transport (sans-I/O): decode jobs, and cancellations of them.

A session's actions are server messages to send (protocol.py), `DecodeJob`s to run on the
engine, `Cancel`s of jobs whose result is no longer wanted and, with diarize on, `EmbedJob`s
(a final's speech to embed for its speaker). The transport runs each job and hands its outcome
back to the session (server/in_flight.py drives every transport's jobs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..config import SAMPLE_RATE_HZ
from .audio import Audio
from .engine_api import DecodeRequest, Transcript
from .protocol import ServerMessage

JobKind = Literal["partial", "candidate", "final"]


@dataclass(eq=False)
class DecodeJob:
    kind: JobKind
    utterance: int
    start_sample: int  # absolute sample index of the utterance audio's first sample
    end_sample: int  # one past its last
    request: DecodeRequest
    # samples of audio before `start` at the head of the request's audio (--context-s) and
    # after `end` at its tail (--cut-lookahead-s): heard by the model, but only the
    # utterance's own words are kept (session.py)
    before: int = 0
    after: int = 0
    by_text: bool = False  # the context's words were told from its own by text (audio_context.py)

    @property
    def own_audio(self) -> Audio:
        """The request's audio less the context either side: [start, end)."""
        audio = self.request.audio
        return audio[self.before : len(audio) - self.after]

    def own_words(self, result: Transcript, first: int | None = None) -> Transcript:
        """`result` of a decode with context around its utterance's audio: only the words
        whose middle lies in the utterance's own audio (`first`: the words from that one on,
        up to its end), timed from its start. (A decode without word times is kept whole:
        the real engine times every word of a request with context.)"""
        lo = self.before / SAMPLE_RATE_HZ
        hi = lo + (self.end_sample - self.start_sample) / SAMPLE_RATE_HZ
        own = result.words[first:] if first is not None else result.words
        lo_mid = lo if first is None else float("-inf")
        words = tuple(dataclasses.replace(w, start=round(max(0.0, w.start - lo), 3),
                                          end=round(max(0.0, w.end - lo), 3))
                      for w in own if lo_mid <= (w.start + w.end) / 2 < hi)
        return dataclasses.replace(result, words=words,
                                   text="".join(w.word for w in words).strip())


@dataclass(eq=False)
class Cancel:
    """The transport should drop `job`: its result is no longer wanted."""

    job: DecodeJob


@dataclass(eq=False)
class EmbedJob:
    """The speaker embeddings of one final's speech (diarize=true), cut at its pauses into
    `pieces` (speaker_changes.py): the transport embeds each piece (engine/speakers.py) and
    hands the vectors back, in order, with `Session.on_embedding`."""

    utterance: int
    pieces: tuple[Audio, ...]

    @property
    def audio(self) -> Audio:
        """The speech embedded: the pieces end to end."""
        return np.concatenate(self.pieces) if self.pieces else np.zeros(0, np.float32)


Action = ServerMessage | DecodeJob | Cancel | EmbedJob
