"""Speaker changes inside one final: where a reply that did not wait for the endpoint begins.

An utterance ends only after the endpoint silence (500 ms by default), so two people whose
turns are closer than that share one utterance and one final. This module finds where the voice
changes inside a final's speech, in two steps around the speaker model (which runs elsewhere):

- `pieces`: the speech cut at its pauses (quiet stretches of at least `min_pause_s`; a change of
  speaker leaves one, since people rarely talk over each other in these gaps), each piece long
  enough to embed (`min_piece_s`: shorter ones join a neighbour across the shorter pause), at
  most `max_pieces` (the shortest pauses go first). Speech with no such pause is one piece.
- `changes`: given each piece's embedding, binary segmentation: the cut between pieces where
  the voices either side are least alike, taken when their cosine similarity is under
  `split_threshold`; then each side the same way. Either side of a cut is the mean embedding of
  the pieces next to it, as many as make `min_side_s` of speech (not the whole side: in
  A-B-A the whole of B-A would look half like A).

A side is then one turn for the session's `SpeakerTracker` (speaker_finals.py); two sides the
tracker gives the same speaker are simply one speaker's words. No model and no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import SAMPLE_RATE_HZ
from ..errors import ConfigError
from .audio import Audio

HOP_SAMPLES = SAMPLE_RATE_HZ // 100  # 10 ms
QUIET = 0.05  # a hop whose peak is under this share of the speech's loudest hop is quiet


@dataclass(frozen=True, kw_only=True)
class ChangeOptions:
    min_pause_s: float = 0.15  # a quiet stretch this long inside speech may be a change
    min_piece_s: float = 0.5  # shorter speech between pauses joins a neighbour
    min_side_s: float = 0.6  # each side of a change has at least this much speech
    max_pieces: int = 8  # embeddings per final at most (its CPU cost is its speech either way)
    # cosine between the two sides' mean embeddings under which the voice changed; measured
    # for the packaged embedder in docs/diarization.md
    split_threshold: float = 0.55
    # cosine between the two sides under which the final also splits where the session's
    # speakers tell the sides apart: the tracker would give them different speakers
    # (speaker_finals.assign_sides); measured in docs/diarization.md
    known_split_threshold: float = 0.7

    def __post_init__(self) -> None:
        if self.max_pieces < 1:
            raise ConfigError(f"max_pieces must be at least 1, got {self.max_pieces}")
        for name in ("split_threshold", "known_split_threshold"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be a cosine in [-1, 1], got "
                                  f"{getattr(self, name)}")


@dataclass(frozen=True)
class Piece:
    start_s: float  # from the start of the audio it was cut from
    end_s: float
    audio: Audio

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def pieces(audio: Audio, options: ChangeOptions | None = None) -> list[Piece]:
    """`audio`'s speech, less its quiet head and tail, cut at its pauses (module docstring);
    the whole of `audio` as one piece when it has no loud part."""
    options = options or ChangeOptions()
    hops = len(audio) // HOP_SAMPLES
    if hops == 0:
        return [Piece(0.0, len(audio) / SAMPLE_RATE_HZ, audio)]
    peaks = np.abs(audio[: hops * HOP_SAMPLES]).reshape(hops, HOP_SAMPLES).max(axis=1)
    loud = peaks >= QUIET * float(peaks.max())
    if not loud.any() or float(peaks.max()) == 0.0:
        return [Piece(0.0, len(audio) / SAMPLE_RATE_HZ, audio)]
    spans = _loud_spans(loud, round(options.min_pause_s * 100))
    spans = _merged(spans, round(options.min_piece_s * 100), options.max_pieces)
    return [Piece(lo / 100, hi / 100, audio[lo * HOP_SAMPLES : hi * HOP_SAMPLES])
            for lo, hi in spans]


def _loud_spans(loud: np.ndarray, min_pause_hops: int) -> list[tuple[int, int]]:
    """[start, end) hop ranges of speech, split where at least `min_pause_hops` are quiet."""
    where = np.flatnonzero(loud)
    spans = [[int(where[0]), int(where[0]) + 1]]
    for hop in where[1:]:
        if hop - spans[-1][1] >= min_pause_hops:
            spans.append([int(hop), int(hop) + 1])
        else:
            spans[-1][1] = int(hop) + 1
    return [(lo, hi) for lo, hi in spans]


def _merged(spans: list[tuple[int, int]], min_piece_hops: int,
            max_pieces: int) -> list[tuple[int, int]]:
    """Join spans across their shortest pauses until each is long enough and few enough."""
    spans = list(spans)
    while len(spans) > 1:
        pauses = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
        short = [i for i, (lo, hi) in enumerate(spans) if hi - lo < min_piece_hops]
        if short:  # the shortest piece joins the neighbour across its shorter pause
            i = min(short, key=lambda k: spans[k][1] - spans[k][0])
            left = pauses[i - 1] if i > 0 else None
            right = pauses[i] if i < len(pauses) else None
            at = i - 1 if right is None or (left is not None and left <= right) else i
        elif len(spans) > max_pieces:
            at = int(np.argmin(pauses))
        else:
            break
        spans[at : at + 2] = [(spans[at][0], spans[at + 1][1])]
    return spans


def changes(durations_s: list[float], vectors: list[np.ndarray],
            options: ChangeOptions | None = None) -> list[int]:
    """Indices k (ascending) of the pieces where a new voice begins (between piece k-1 and
    piece k), from each piece's speech length and embedding."""
    options = options or ChangeOptions()
    if len(vectors) != len(durations_s):
        raise ValueError("one embedding per piece")
    weighted = [d * _unit(v) for d, v in zip(durations_s, vectors, strict=True)]
    found: list[int] = []
    _split(weighted, durations_s, 0, len(weighted), options, found)
    return sorted(found)


def _split(weighted: list[np.ndarray], durations_s: list[float], lo: int, hi: int,
           options: ChangeOptions, found: list[int]) -> None:
    best: tuple[float, int] | None = None
    for k in range(lo + 1, hi):
        left, right = k, k  # the pieces next to the cut, until each side has min_side_s
        while left > lo and sum(durations_s[left:k]) < options.min_side_s:
            left -= 1
        while right < hi and sum(durations_s[k:right]) < options.min_side_s:
            right += 1
        if (sum(durations_s[left:k]) < options.min_side_s
                or sum(durations_s[k:right]) < options.min_side_s):
            continue
        similarity = float(_unit(sum(weighted[left:k])) @ _unit(sum(weighted[k:right])))
        if best is None or similarity < best[0]:
            best = (similarity, k)
    if best is None or best[0] >= options.split_threshold:
        return
    found.append(best[1])
    _split(weighted, durations_s, lo, best[1], options, found)
    _split(weighted, durations_s, best[1], hi, options, found)


def side_vector(durations_s: list[float], vectors: list[np.ndarray]) -> np.ndarray:
    """One side's embedding: its pieces' unit embeddings weighted by their speech."""
    return _unit(sum(d * _unit(v) for d, v in zip(durations_s, vectors, strict=True)))


def _unit(vector: np.ndarray | float) -> np.ndarray:
    v = np.asarray(vector, np.float64).ravel()
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("a speaker embedding must be finite and non-zero")
    return v / norm
