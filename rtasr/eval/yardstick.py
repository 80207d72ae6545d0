"""The one yardstick a stream's finals are measured against, for the tests and every benchmark.

Each reference utterance is decoded whole, from its span plus the margins the server gives a
final (the segmenter's pre-roll before the first word, the pause after the last one), with
the best settings one file affords: faster-whisper's own file transcription, beam 5, 30 s
windows that continue where the last one stopped (a single decode of a 20 s utterance, the
server's path, drops whole sentences at its end: docs/benchmarks.md). It is scored like the
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

from ..config import SAMPLE_RATE_HZ, Config
from ..core.audio import Audio
from ..core.protocol import Task

if TYPE_CHECKING:
    from ..engine.engine import Engine

BEAM_SIZE = 5  # faster-whisper's default for a file


@dataclass(frozen=True)
class Reference:
    """A reference utterance: what was said, and when (seconds into the stream)."""

    text: str
    start: float
    end: float


class Decoder(Protocol):
    def transcribe_whole(self, audio: Audio, *, language: str | None,
                         task: Task = "transcribe", beam_size: int = 5) -> str: ...


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
           *, language: str | None = None, task: Task = "transcribe") -> list[str]:
    """Each reference utterance decoded whole from its span with the server's margins: one
    text each. `language` None: detected from each utterance's own audio."""
    return [decoder.transcribe_whole(np.ascontiguousarray(audio[lo:hi]), language=language,
                                     task=task, beam_size=BEAM_SIZE)
            for lo, hi in spans(references, config, len(audio))]


def engine(config: Config) -> Engine:
    """A started engine with `config`'s model and device for the yardstick (one worker, which
    the yardstick leaves idle). Stop it when done."""
    from ..engine.engine import Engine

    yardstick = Engine(config.replace(workers=1, max_batch_size=1))
    yardstick.start()
    return yardstick
