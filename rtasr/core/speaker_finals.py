"""Finals and their speakers (diarize=true): who said each final, then out in order.

With diarize on, a session asks for the embedding of each final's speech as soon as the final
is decoded (`embed`: an `EmbedJob` for the transport), and its finals, once due in utterance
order (finals.py), wait here (`queue`) for their embeddings (`label`). The session's
`SpeakerTracker` (speakers.py) sees the turns in utterance order, whatever order the
embeddings come back in, so a label once sent never changes and numbers count up in order of
first appearance. The speaker is stamped on the final and on each of its words. A final whose
embedding failed goes out without a speaker: no words are lost. Only the final's speech is
embedded (`speech_audio`: the audio less its quiet head and tail), not the pre-roll and pause
around it: silence pulls every turn's embedding toward the same point and merges speakers.
(Word timestamps are not used for this: on speech the model half understands they drift.)
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from ..config import SAMPLE_RATE_HZ
from .actions import EmbedJob
from .audio import Audio
from .protocol import Final
from .speakers import SpeakerOptions, SpeakerTracker, speaker_confidence


class SpeakerFinals:
    def __init__(self, options: SpeakerOptions | None = None) -> None:
        self.tracker = SpeakerTracker(options or SpeakerOptions())
        self._due: deque[Final] = deque()  # finals in utterance order, waiting for a speaker
        self._vectors: dict[int, np.ndarray | None] = {}  # None: its embedding failed
        self._asked: set[int] = set()  # utterances whose embedding has not come back

    @property
    def waiting(self) -> bool:
        """True while a final waits for its speaker."""
        return bool(self._due)

    def embed(self, utterance: int, audio: Audio) -> EmbedJob:
        """Ask for the embedding of `utterance`'s final's speech."""
        self._asked.add(utterance)
        return EmbedJob(utterance, audio)

    def queue(self, finals: list[Final]) -> list[Final]:
        """Finals now due, in utterance order; returns those whose speaker is known."""
        self._due.extend(finals)
        return self._release()

    def label(self, utterance: int, vector: np.ndarray | None) -> list[Final]:
        """`utterance`'s embedding (None: it failed); returns the finals now labelled."""
        if utterance not in self._asked:
            return []
        self._asked.discard(utterance)
        self._vectors[utterance] = vector
        return self._release()

    def _release(self) -> list[Final]:
        out: list[Final] = []
        while self._due:
            final = self._due[0]
            if final.utterance in self._asked:
                break  # its embedding is still on its way
            self._due.popleft()
            vector = self._vectors.pop(final.utterance, None)
            if vector is None:  # failed (or never asked for): sent without a speaker
                out.append(final)
                continue
            try:
                similarities = self.tracker.similarities(vector)
                speaker = self.tracker.assign(vector, speech_s(final)).speaker
            except ValueError:  # a degenerate embedding (all zeros): no speaker
                out.append(final)
                continue
            sure = speaker_confidence(similarities, speaker, self.tracker.options.threshold)
            out.append(labelled(final, speaker, sure))
        return out


HOP = SAMPLE_RATE_HZ // 100  # 10 ms
QUIET = 0.05  # a hop whose peak is under this share of the utterance's loudest hop is quiet


def speech_audio(audio: Audio) -> Audio:
    """`audio` less its quiet head and tail (10 ms hops under QUIET of the loudest hop's
    peak); all of it when that leaves under 0.25 s."""
    hops = len(audio) // HOP
    if hops == 0:
        return audio
    peaks = np.abs(audio[: hops * HOP]).reshape(hops, HOP).max(axis=1)
    loud = np.flatnonzero(peaks >= QUIET * float(peaks.max()))
    if not len(loud):
        return audio
    speech = audio[int(loud[0]) * HOP : (int(loud[-1]) + 1) * HOP]
    return speech if len(speech) >= SAMPLE_RATE_HZ // 4 else audio


def speech_s(final: Final) -> float:
    """How long the final's words took (the turn's length the tracker weighs)."""
    if not final.words:
        return final.end - final.start
    return max(0.0, final.words[-1].end - final.words[0].start)


def labelled(final: Final, speaker: int, confidence: float | None = None) -> Final:
    """`final` with `speaker` on it and on each of its words (with its `confidence`)."""
    words = [dataclasses.replace(w, speaker=speaker, speaker_confidence=confidence)
             for w in final.words]
    return dataclasses.replace(final, speaker=speaker, words=words)
