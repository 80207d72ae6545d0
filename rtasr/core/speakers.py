"""Who said it, online: one session's speakers, told apart by their voice embeddings.

`SpeakerTracker` takes the embedding of each final's speech, in order, and answers with a
speaker number: the nearest known speaker when the cosine similarity to that speaker's centroid
reaches the threshold, else a new speaker. A number once given is never taken back (a final
already sent keeps its label); numbers count up from 0 in order of first appearance, stable for
the session. Memory is bounded: at most `max_speakers` centroids (a running sum and a count
each, nothing else stored); past the cap every turn goes to its nearest speaker.

Only a turn that is clearly a speaker's moves that speaker's centroid: one under the threshold
that cannot open a speaker (it is shorter than `min_new_s`, too little voice to open one, or
the cap is reached) joins its nearest speaker and leaves its centroid as it is, so a stray turn
never drags a centroid toward another voice; nor does a turn under `min_update_s`. The first
turn of a session opens speaker 0 whatever its length. No audio, no model, no I/O here: the
engine computes the embeddings (engine/speakers.py), the session hands them in. Known voices
may be enrolled before the first turn (`enroll`: a reference clip's embedding, as OpenAI's
`known_speaker_references[]` give): they take the first numbers, in the order given, and are
matched like any other speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class SpeakerOptions:
    # cosine similarity to a speaker's centroid at or above which a turn is that speaker's;
    # chosen for the packaged embedder on benchmarks/speaker_choice.py's speakers
    # (docs/diarization.md)
    threshold: float = 0.62
    max_speakers: int = 8
    min_new_s: float = 1.0  # a shorter turn joins its nearest speaker (it opens none)
    min_update_s: float = 0.5  # a shorter turn leaves its speaker's centroid as it is

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"speaker threshold must be a cosine in [-1, 1], got "
                              f"{self.threshold}")
        if self.max_speakers < 1:
            raise ConfigError(f"max_speakers must be at least 1, got {self.max_speakers}")


@dataclass(frozen=True)
class Assignment:
    speaker: int  # 0, 1, ... in order of first appearance
    similarity: float  # cosine to the speaker's centroid before this turn (1.0 for a new one)
    new: bool  # this turn opened the speaker


@dataclass
class _Speaker:
    total: np.ndarray  # sum of the unit embeddings of the turns that shaped the centroid
    turns: int = 1

    def centroid(self) -> np.ndarray:
        return self.total / (float(np.linalg.norm(self.total)) or 1.0)


@dataclass
class SpeakerTracker:
    options: SpeakerOptions = field(default_factory=SpeakerOptions)
    _speakers: list[_Speaker] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self._speakers)

    def assign(self, embedding: np.ndarray, duration_s: float) -> Assignment:
        """The speaker of one turn (its speech's embedding and length), in session order."""
        unit = _unit(embedding)
        if not self._speakers:
            return self._open(unit)
        similarities = self.similarities(unit)
        nearest = int(np.argmax(similarities))
        similarity = float(similarities[nearest])
        if similarity < self.options.threshold:
            if self.may_open(duration_s):
                return self._open(unit)
            return Assignment(nearest, similarity, new=False)  # its centroid stays as it is
        if duration_s >= self.options.min_update_s:
            speaker = self._speakers[nearest]
            speaker.total = speaker.total + unit
            speaker.turns += 1
        return Assignment(nearest, similarity, new=False)

    def may_open(self, duration_s: float) -> bool:
        """A turn this long, unlike every known speaker, would open a new one."""
        return (duration_s >= self.options.min_new_s
                and len(self._speakers) < self.options.max_speakers)

    def clear_speaker(self, embedding: np.ndarray, duration_s: float) -> int | None:
        """Whom `assign` would clearly give this turn, changing nothing: a known speaker it
        reaches the threshold to (its number), or a new one (-1); None before the first turn
        and when neither (unlike every speaker but unable to open one: it would join the
        nearest for want of another choice)."""
        similarities = self.similarities(embedding)
        if len(similarities) == 0:
            return None
        nearest = int(np.argmax(similarities))
        if similarities[nearest] >= self.options.threshold:
            return nearest
        return -1 if self.may_open(duration_s) else None

    def enroll(self, embedding: np.ndarray) -> int:
        """Open a speaker from a known voice (a reference clip's embedding) before any turn:
        its number is the next one, and turns near it are its. Raises ValueError past
        `max_speakers` or for a degenerate embedding."""
        if len(self._speakers) >= self.options.max_speakers:
            raise ValueError(f"at most {self.options.max_speakers} speakers")
        return self._open(_unit(embedding)).speaker

    def similarities(self, embedding: np.ndarray) -> np.ndarray:
        """The cosine similarity of a turn's embedding to each known speaker's centroid, in
        speaker order (empty before the first turn); read only, nothing changes."""
        unit = _unit(embedding)
        if not self._speakers:
            return np.zeros(0)
        similarities: np.ndarray = np.stack([s.centroid() for s in self._speakers]) @ unit
        return similarities

    def _open(self, unit: np.ndarray) -> Assignment:
        self._speakers.append(_Speaker(unit.copy()))
        return Assignment(len(self._speakers) - 1, 1.0, new=True)


def speaker_confidence(similarities: np.ndarray, speaker: int, threshold: float) -> float:
    """How clearly a turn's voice chose `speaker`, 0..1 (Deepgram's `speaker_confidence`):
    0.5 plus the turn's margin, in cosine similarity, to the nearest other outcome, clipped.
    `similarities` are the turn's to the speakers known before it (`similarities()`). For a
    known speaker the other outcomes are every other speaker and a new one (the threshold);
    for a new speaker, the nearest known one. 1.0 for the session's first turn (no other
    outcome); 0.5: on the edge; under 0.5: the turn sounded more like another outcome but
    was given this speaker anyway (too short to open a new one, or past the speaker cap)."""
    if len(similarities) == 0:
        return 1.0
    if speaker >= len(similarities):  # it opened a new speaker
        margin = threshold - float(np.max(similarities))
    else:
        others = np.delete(similarities, speaker)
        rival = max(threshold, float(np.max(others))) if len(others) else threshold
        margin = float(similarities[speaker]) - rival
    return round(min(1.0, max(0.0, 0.5 + margin)), 3)


def _unit(embedding: np.ndarray) -> np.ndarray:
    vector = np.asarray(embedding, np.float64).ravel()
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("a speaker embedding must be finite and non-zero")
    return vector / norm
