"""The one yardstick a stream's finals are measured against, for the tests and every benchmark.

Each reference utterance is decoded whole, from its span plus the margins the server gives a
final (the segmenter's pre-roll before the first word, the pause after the last one), with
the best settings one file affords: the full 30 s encoder window. It is scored like the
stream: one alignment of all the utterances' text joined against all the reference text
(`rtasr.wer.joined_wer`), so a word that moved from one utterance to the next costs nothing
in either. A stream can only lose words against it; one that "beats" it is noise.

Where two utterances lie closer than the margins (run-on speech), each margin stops halfway
across the gap, as a cut between them would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .audio import Audio
from .config import SAMPLE_RATE_HZ, Config
from .decoding import Priority, Request, Transcript
from .protocol import Task

if TYPE_CHECKING:
    from .engine import Engine

WINDOW_S = 0.0  # the encoder window: 0 is Whisper's full 30 s


@dataclass(frozen=True)
class Reference:
    """A reference utterance: what was said, and when (seconds into the stream)."""

    text: str
    start: float
    end: float


class Decoder(Protocol):
    def decode_batch(self, requests: list[Request], *, gate: bool = True,
                     spare: bool = False) -> list[Transcript]: ...


def spans(references: Sequence[Reference], config: Config, samples: int) -> list[tuple[int, int]]:
    """Each reference's sample span with the server's margins: `preroll_ms` before its start
    and `pause_ms` after its end, each at most half the gap to its neighbour, within the
    stream's `samples`."""
    ms = SAMPLE_RATE_HZ / 1000
    out = []
    for k, ref in enumerate(references):
        lo, hi = ref.start * SAMPLE_RATE_HZ, ref.end * SAMPLE_RATE_HZ
        before = config.preroll_ms * ms
        after = config.pause_ms * ms
        if k > 0:
            before = min(before, (lo - references[k - 1].end * SAMPLE_RATE_HZ) / 2)
        if k + 1 < len(references):
            after = min(after, (references[k + 1].start * SAMPLE_RATE_HZ - hi) / 2)
        out.append((max(0, round(lo - max(0.0, before))),
                    min(samples, round(hi + max(0.0, after)))))
    return out


def decode(decoder: Decoder, audio: Audio, references: Sequence[Reference], config: Config,
           *, language: str | None = None, task: Task = "transcribe",
           beam_size: int = 1) -> list[str]:
    """Each reference utterance decoded whole from its span with the server's margins: one
    text each. `language` None: detected from each utterance's own audio."""
    texts = []
    for lo, hi in spans(references, config, len(audio)):
        request = Request(audio=np.ascontiguousarray(audio[lo:hi]), priority=Priority.FINAL,
                          session="yardstick", language=language, task=task,
                          beam_size=beam_size, word_timestamps=True)
        texts.append(decoder.decode_batch([request])[0].text)
    return texts


def engine(config: Config) -> Engine:
    """A started one-worker engine for the yardstick: `config`'s model and device, the full
    encoder window. Stop it when done."""
    from .engine import Engine

    yardstick = Engine(config.replace(encoder_window_s=WINDOW_S, spare_encoder_window_s=WINDOW_S,
                                      workers=1, max_batch_size=1))
    yardstick.start()
    return yardstick
