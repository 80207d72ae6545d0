"""Word error rate with a light text normalisation, and where a stream's errors sit (near
the cuts between finals or not), for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.text import normalize


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference` (0.0 is perfect)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return float(bool(hyp))
    return edit_distance(ref, hyp) / len(ref)


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over many utterances: all their edits over all their reference words."""
    edits = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref = normalize(reference)
        edits += edit_distance(ref, normalize(hypothesis))
        words += len(ref)
    return edits / max(1, words)


def joined_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word error rate of a stream's texts, joined, against its references, joined: one
    alignment, as `score_stream` scores finals, so a word that moved from one utterance's text
    to the next one's costs nothing."""
    words = sum(len(normalize(text)) for text in references)
    return sum(errors_by_reference(references, hypotheses)) / max(1, words)


def errors_by_reference(references: Sequence[str], hypotheses: Sequence[str]) -> list[int]:
    """The edits of one alignment of the joined hypotheses against the joined references,
    counted against the reference utterance each falls in (an inserted word against the
    utterance of the reference word before it)."""
    owner = [k for k, text in enumerate(references) for _ in normalize(text)]
    ref = [w for text in references for w in normalize(text)]
    hyp = [w for text in hypotheses for w in normalize(text)]
    counts = [0] * len(references)
    last = 0
    for i, j in align(ref, hyp):
        if i is not None:
            last = owner[i]
        if i is None or j is None or ref[i] != hyp[j]:
            counts[last] += 1
    return counts


# Streams: where the errors are -------------------------------------------------------------

NEAR_CUT_S = 1.0


@dataclass(frozen=True)
class _Token:
    word: str
    time: float  # seconds into the stream
    owner: int  # the reference utterance or the final it belongs to


@dataclass
class StreamScore:
    """A stream's finals against its reference utterances, aligned word by word."""

    words: int = 0
    errors: int = 0
    cuts: int = 0  # finals that ended without a pause (a flush or a run-on cut)
    lost: int = 0  # reference words within NEAR_CUT_S of a cut that no final holds
    doubled: int = 0  # final words within NEAR_CUT_S of a cut that the reference lacks
    garbled: int = 0  # reference words within NEAR_CUT_S of a cut that a final misspells
    last_final: dict[int, int] = field(default_factory=dict)  # utterance -> final with its end

    @property
    def wer(self) -> float:
        return self.errors / max(1, self.words)


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """A word alignment with the fewest edits: (ref index, hyp index) pairs, None for a gap."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), np.int32)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    hyp_arr = np.array(hyp, dtype=object)
    for i in range(1, n + 1):
        sub = cost[i - 1, :-1] + (hyp_arr != ref[i - 1])
        row = np.minimum(cost[i - 1, 1:] + 1, sub)
        for j in range(1, m + 1):  # insertions run along the row
            row[j - 1] = min(row[j - 1], (row[j - 2] if j > 1 else cost[i, 0]) + 1)
        cost[i, 1:] = row
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


def score_stream(references: Sequence[tuple[str, float, float]],
                 finals: Sequence[Mapping[str, Any]],
                 alone: Sequence[str] | None = None) -> StreamScore:
    """Align a stream's finals (native `final` messages, with words) to its reference
    utterances, (text, start s, end s); count the errors near cuts. A reference word is timed
    by its place in its utterance, good to a few hundred ms.

    Lost: a reference word near a cut that no final holds, although the model heard it when
    the utterance was decoded alone (`alone`: one text per reference utterance; without it,
    every missing word near a cut counts). Doubled: a final word near a cut that the reference
    lacks and that repeats the word before or after it (the same word in two finals)."""
    ref: list[_Token] = []
    for k, (text, start, end) in enumerate(references):
        words = normalize(text)
        ref += [_Token(w, start + (i + 0.5) / len(words) * (end - start), k)
                for i, w in enumerate(words)]
    hyp: list[_Token] = []
    for k, final in enumerate(finals):
        for w in final.get("words") or [final]:
            mid = (w["start"] + w["end"]) / 2
            hyp += [_Token(t, mid, k) for t in normalize(w.get("word", w.get("text", "")))]
    cuts = [f["end"] for f in finals[:-1] if not f.get("endpoint", True)]
    score = StreamScore(words=len(ref), cuts=len(cuts))

    def near(t: float) -> bool:
        return any(abs(t - c) <= NEAR_CUT_S for c in cuts)

    heard = _heard_alone(references, alone) if alone is not None else None
    pairs = align([t.word for t in ref], [t.word for t in hyp])
    for n, (i, j) in enumerate(pairs):
        if i is None:
            assert j is not None
            score.errors += 1
            around = {hyp[x].word for x in (j - 1, j + 1) if 0 <= x < len(hyp)}
            around |= {ref[x].word for p in pairs[max(0, n - 1) : n + 2] if (x := p[0]) is not None}
            score.doubled += near(hyp[j].time) and hyp[j].word in around
        elif j is None:
            score.errors += 1
            score.lost += near(ref[i].time) and (heard is None or i in heard)
        else:
            score.last_final[ref[i].owner] = hyp[j].owner
            if ref[i].word != hyp[j].word:
                score.errors += 1
                score.garbled += near(ref[i].time)
    return score


def _heard_alone(references: Sequence[tuple[str, float, float]],
                 alone: Sequence[str]) -> set[int]:
    """Indexes (over all reference words) of the words each utterance's lone decode got right."""
    heard: set[int] = set()
    offset = 0
    for (text, _, _), hyp_text in zip(references, alone, strict=True):
        ref, hyp = normalize(text), normalize(hyp_text)
        heard |= {offset + i for i, j in align(ref, hyp)
                  if i is not None and j is not None and ref[i] == hyp[j]}
        offset += len(ref)
    return heard
