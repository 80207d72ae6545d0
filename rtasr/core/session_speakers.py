"""Speaker labels, for `Session` (diarize=true): when a final's speech is embedded, and its
finals held until their speakers are known (speaker_finals.py).

A final's speech is embedded as soon as its span is known (the utterance's end, or its cut), so
the embedding runs beside the final's decode; an utterance whose decode finds no words forgets
its embedding. Known voices may be enrolled before any audio (OpenAI's
`known_speaker_references[]`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import SAMPLE_RATE_HZ
from .actions import Action, DecodeJob
from .audio import Audio
from .protocol import Final, StreamParams
from .speaker_finals import SpeakerFinals
from .utterance import Utterance


class SpeakerLabels:
    """The speaker methods of `Session` (a mixin: they read and change the session's state)."""

    params: StreamParams
    _speakers: SpeakerFinals | None

    def _labelled(self, utt: Utterance, job: DecodeJob, final: Final | None, due: list[Final],
                  actions: list[Action]) -> list[Action]:
        """The finals now due (`due`, in utterance order) that may go out: all of them
        without diarize; with it, those whose speakers are known, labelled. `final`: `utt`'s,
        just decoded by `job` (None: no words)."""
        if not self.params.diarize and self._speakers is None:
            return list(due)
        speakers = self._speaker_finals()
        if final is None:
            speakers.forget(utt.index)
        elif not utt.embedded:
            self._embed(utt, job.start_sample, job.own_audio, actions)
        return list(speakers.queue(due))

    def _embed(self, utt: Utterance, start: int, audio: Audio, actions: list[Action]) -> None:
        """Ask for the embeddings of `utt`'s final's speech (diarize=true), once: as soon as
        its span is known (its end, or its cut), so they are computed while it decodes."""
        if self.params.diarize and not utt.embedded:
            utt.embedded = True
            start_s = round(start / SAMPLE_RATE_HZ, 3)
            actions.append(self._speaker_finals().embed(utt.index, audio, start_s))

    def _speaker_finals(self) -> SpeakerFinals:
        if self._speakers is None:
            self._speakers = SpeakerFinals()
        return self._speakers

    def enroll_speakers(self, vectors: list[np.ndarray]) -> None:
        """Known voices (diarize=true, before any audio): speakers 0, 1, ... in this order,
        matched like any other (speakers.py's `enroll`)."""
        for vector in vectors:
            self._speaker_finals().tracker.enroll(vector)

    def on_embedding(self, utterance: int,
                     vectors: Sequence[np.ndarray] | np.ndarray | None) -> list[Action]:
        """The speaker embeddings of `utterance`'s final's speech, one per piece of its
        `EmbedJob` (None: they could not be computed; the final goes out without a
        speaker)."""
        if self._speakers is None:
            return []
        return list(self._speakers.label(utterance, vectors))
