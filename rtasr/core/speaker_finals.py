"""Finals and their speakers (diarize=true): who said each final, and each of its words.

With diarize on, a session asks for the embeddings of each final's speech as soon as its span
is known, at the utterance's end or cut, so they are computed while the final decodes (`embed`:
an `EmbedJob` for the transport; `forget` when the decode finds no words), and its finals, once
due in utterance order (finals.py), wait here (`queue`) for them (`label`). Only speech is
embedded, not the pre-roll and pause around it (silence pulls every turn's embedding toward the
same point and merges speakers), and it is embedded in pieces cut at its pauses
(speaker_changes.py), so that a reply that came sooner than the endpoint silence, and shares
the final, is found: the final's speech splits where the pieces' voices change, each side is
one turn for the session's `SpeakerTracker` (speakers.py), and each word gets the speaker of
the side its middle lies in.

The tracker sees the turns in utterance order, whatever order the embeddings come back in, so
a label once sent never changes and numbers count up in order of first appearance. A final
keeps one message per utterance whatever its speakers: `speaker` on each word says who said
it, and the final's `speaker` is the one who said most of its speech. A final whose embedding
failed goes out without a speaker: no words are lost.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Sequence

import numpy as np

from ..config import SAMPLE_RATE_HZ
from .actions import EmbedJob
from .audio import Audio
from .protocol import Final
from .speaker_changes import HOP_SAMPLES as HOP
from .speaker_changes import QUIET, ChangeOptions, changes, pieces, side_vector
from .speakers import Assignment, SpeakerOptions, SpeakerTracker, speaker_confidence

log = logging.getLogger(__name__)

Span = tuple[float, float]  # start and end (s, on the stream's clock)


@dataclasses.dataclass(frozen=True)
class Side:
    """Speech of one voice inside a final: its pieces' span and its speaker."""

    start_s: float
    end_s: float
    speaker: int
    speech_s: float
    confidence: float  # how clearly the voice chose the speaker (speakers.speaker_confidence)


class SpeakerFinals:
    def __init__(self, options: SpeakerOptions | None = None,
                 change_options: ChangeOptions | None = None) -> None:
        self.tracker = SpeakerTracker(options or SpeakerOptions())
        self.change_options = change_options or ChangeOptions()
        self._due: deque[Final] = deque()  # finals in utterance order, waiting for a speaker
        self._vectors: dict[int, list[np.ndarray] | None] = {}  # None: its embedding failed
        self._asked: dict[int, list[Span]] = {}  # utterance → its pieces, not back yet
        self._spans: dict[int, list[Span]] = {}  # utterance → its pieces, back

    @property
    def waiting(self) -> bool:
        """True while a final waits for its speaker."""
        return bool(self._due)

    def embed(self, utterance: int, audio: Audio, start_s: float = 0.0) -> EmbedJob:
        """Ask for the embeddings of `utterance`'s final's speech (`audio`, from `start_s`)."""
        cut = pieces(audio, self.change_options)
        self._asked[utterance] = [(start_s + p.start_s, start_s + p.end_s) for p in cut]
        return EmbedJob(utterance, tuple(p.audio for p in cut))

    def forget(self, utterance: int) -> None:
        """`utterance` has no final (nothing heard): its embeddings, asked for or back, are
        not wanted; one that comes back later is ignored."""
        self._asked.pop(utterance, None)
        self._vectors.pop(utterance, None)
        self._spans.pop(utterance, None)

    @property
    def held(self) -> int:
        """Utterances whose embeddings are asked for or held for their final."""
        return len(self._asked) + len(self._vectors)

    def queue(self, finals: list[Final]) -> list[Final]:
        """Finals now due, in utterance order; returns those whose speakers are known."""
        self._due.extend(finals)
        return self._release()

    def label(self, utterance: int,
              vectors: Sequence[np.ndarray] | np.ndarray | None) -> list[Final]:
        """`utterance`'s embeddings, one per piece of its job (one array: the speech as one
        piece; None: they failed); returns the finals now labelled."""
        if utterance not in self._asked:
            return []
        self._spans[utterance] = self._asked.pop(utterance)
        if isinstance(vectors, np.ndarray) and vectors.ndim == 1:
            vectors = [vectors]
        self._vectors[utterance] = None if vectors is None else list(vectors)
        return self._release()

    def _release(self) -> list[Final]:
        out: list[Final] = []
        while self._due:
            final = self._due[0]
            if final.utterance in self._asked:
                break  # its embeddings are still on their way
            self._due.popleft()
            vectors = self._vectors.pop(final.utterance, None)
            spans = self._spans.pop(final.utterance, [])
            try:  # failed, never asked for, or degenerate (all zeros): sent without a speaker
                sides = None if vectors is None else self._sides(spans, vectors)
            except ValueError:
                sides = None
            out.append(final if sides is None else labelled_sides(final, sides))
        return out

    def _sides(self, spans: list[Span], vectors: list[np.ndarray]) -> list[Side]:
        """The final's voices in order, each given its speaker by the tracker."""
        if len(vectors) != len(spans):  # one vector for the whole speech
            spans = [(spans[0][0], spans[-1][1])] if spans else [(0.0, 0.0)]
            vectors = vectors[:1]
            if len(vectors) != 1:
                raise ValueError("one embedding per piece")
        durations_s = [max(end - start, 0.0) for start, end in spans]
        sides = []
        for lo, hi, assignment, sure in assign_sides(self.tracker, durations_s, vectors,
                                                     self.change_options):
            speech_s = sum(durations_s[lo:hi])
            log.debug("speech %.2f-%.2f s (%.2f s): speaker %d, cosine %.2f%s", spans[lo][0],
                      spans[hi - 1][1], speech_s, assignment.speaker, assignment.similarity,
                      " (new)" if assignment.new else "")
            sides.append(Side(spans[lo][0], spans[hi - 1][1], assignment.speaker, speech_s, sure))
        return sides


def assign_sides(tracker: SpeakerTracker, durations_s: list[float], vectors: list[np.ndarray],
                 options: ChangeOptions) -> list[tuple[int, int, Assignment, float]]:
    """One final's pieces (their speech lengths and embeddings) in sides, each assigned by
    `tracker` in order: (first piece, end piece, assignment, confidence) for each side.

    The final splits where the voices either side differ (speaker_changes.changes), and also
    where the session's speakers tell two sides apart: a cut after which the tracker would
    clearly give the two sides different speakers (each side near a known speaker, or long
    enough and unlike every one to open a new speaker), the sides being under
    `known_split_threshold` alike. Two voices too alike for the first test may still be told
    apart by the speakers the session already knows; left whole, their mean would join one
    speaker and move its centroid toward the other voice."""
    bounds = [0, *changes(durations_s, vectors, options), len(vectors)]
    cuts: list[int] = []
    for lo, hi in itertools.pairwise(bounds):
        _known_cuts(tracker, durations_s, vectors, lo, hi, options, cuts)
    bounds = sorted({*bounds, *cuts})
    out = []
    for lo, hi in itertools.pairwise(bounds):
        vector = side_vector(durations_s[lo:hi], vectors[lo:hi])
        similarities = tracker.similarities(vector)
        assignment = tracker.assign(vector, sum(durations_s[lo:hi]))
        out.append((lo, hi, assignment,
                    speaker_confidence(similarities, assignment.speaker,
                                       tracker.options.threshold)))
    return out


def _known_cuts(tracker: SpeakerTracker, durations_s: list[float], vectors: list[np.ndarray],
                lo: int, hi: int, options: ChangeOptions, found: list[int]) -> None:
    """Cuts in pieces [lo, hi) whose two sides the tracker gives different speakers: the one
    whose sides are least alike, then each side the same way. A side shorter than the
    tracker's `min_new_s` has too little voice to differ from the speaker the whole would
    get (a 0.6 s piece of one reader may sound like another), only to confirm it."""
    best: tuple[float, int] | None = None
    whole = tracker.clear_speaker(side_vector(durations_s[lo:hi], vectors[lo:hi]),
                                  sum(durations_s[lo:hi]))
    trusted = tracker.options.min_new_s  # a shorter side only confirms the whole's speaker
    for k in range(lo + 1, hi):
        left_s, right_s = sum(durations_s[lo:k]), sum(durations_s[k:hi])
        if min(left_s, right_s) < options.min_side_s:
            continue
        left = side_vector(durations_s[lo:k], vectors[lo:k])
        right = side_vector(durations_s[k:hi], vectors[k:hi])
        ours = tracker.clear_speaker(left, left_s)
        theirs = tracker.clear_speaker(right, right_s)
        if ours is None or theirs is None or ours == theirs:
            continue
        if (ours != whole and left_s < trusted) or (theirs != whole and right_s < trusted):
            continue
        similarity = float(left @ right)
        if similarity < options.known_split_threshold and (best is None or similarity < best[0]):
            best = (similarity, k)
    if best is None:
        return
    found.append(best[1])
    _known_cuts(tracker, durations_s, vectors, lo, best[1], options, found)
    _known_cuts(tracker, durations_s, vectors, best[1], hi, options, found)


def labelled_sides(final: Final, sides: list[Side]) -> Final:
    """`final` with a speaker on each word (the side its middle lies in; past a change, the
    middle of the pause is the border) and, on the final, the speaker of most of its speech."""
    borders = [(a.end_s + b.start_s) / 2 for a, b in itertools.pairwise(sides)]
    mine = [sides[_side(borders, (w.start + w.end) / 2)] for w in final.words]
    words = [dataclasses.replace(w, speaker=side.speaker, speaker_confidence=side.confidence)
             for w, side in zip(final.words, mine, strict=True)]
    speech: dict[int, float] = {}
    for side in sides:
        speech[side.speaker] = speech.get(side.speaker, 0.0) + side.speech_s
    most = max(speech, key=lambda k: speech[k])  # the first of equals: dicts keep order
    return dataclasses.replace(final, speaker=most, words=words)


def speech_audio(audio: Audio) -> Audio:
    """`audio` less its quiet head and tail (10 ms hops under QUIET of the loudest hop's
    peak); all of it when that leaves under 0.25 s (a reference clip's speech, embedded
    whole)."""
    hops = len(audio) // HOP
    if hops == 0:
        return audio
    peaks = np.abs(audio[: hops * HOP]).reshape(hops, HOP).max(axis=1)
    loud = np.flatnonzero(peaks >= QUIET * float(peaks.max()))
    if not len(loud):
        return audio
    speech = audio[int(loud[0]) * HOP : (int(loud[-1]) + 1) * HOP]
    return speech if len(speech) >= SAMPLE_RATE_HZ // 4 else audio


def _side(borders: list[float], at_s: float) -> int:
    return sum(at_s >= b for b in borders)
