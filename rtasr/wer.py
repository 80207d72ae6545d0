"""Word error rate with a light text normalisation, for tests and benchmarks."""

from __future__ import annotations

import re

_NUMBERS = (  # noqa: SIM905
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_PUNCT = re.compile(r"[^\w\s']")


def normalize(text: str) -> list[str]:
    """Lowercase, drop punctuation, spell out small numbers, split into words."""
    text = _PUNCT.sub(" ", text.lower().replace("-", " "))
    words = []
    for word in text.split():
        word = word.strip("'")
        if word.isdigit() and int(word) < len(_NUMBERS):
            word = _NUMBERS[int(word)]
        if word:
            words.append(word)
    return words


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
