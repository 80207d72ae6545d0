"""Where run-on speech is cut: the cut-point policy of session.py, on plain audio.

Past `--commit-cut-s` an utterance is cut in the middle of its longest quiet gap (frame energy,
vad.quiet_runs) that is long enough for the utterance's age: a pause between sentences is
longer than a breath inside one, and a sentence cut at a breath garbles the words either side,
so a young utterance waits for a long gap and takes a short one only as it grows. Past
`--max-utterance-s` any quiet gap will do, else the quietest 10 ms.
"""

from __future__ import annotations

import numpy as np

from ..config import SAMPLE_RATE_HZ
from .audio import Audio
from .vad import QUIET_HOP, quiet_runs

MIN_PART = SAMPLE_RATE_HZ  # neither side of a cut is shorter than this
# The shortest quiet gap that is a cut point, by how far past commit_cut_s the utterance is:
# (samples past it, gap samples). In Asterisk's long prompts the gaps between sentences last
# 200-550 ms and the breaths inside one 90-150 ms (docs/benchmarks.md, "Words at cuts").
CUT_GAPS = tuple((s * SAMPLE_RATE_HZ, ms * SAMPLE_RATE_HZ // 1000)
                 for s, ms in ((0, 200), (1, 150), (2, 120), (3, 90)))


def min_gap(past_commit_cut: int) -> int:
    """The shortest quiet gap (samples) that is a cut point, `past_commit_cut` samples past
    commit_cut_s."""
    return next((gap for after, gap in reversed(CUT_GAPS) if past_commit_cut >= after),
                CUT_GAPS[0][1])


CONTEXT_GAP = SAMPLE_RATE_HZ // 20  # the audio heard as context begins in a gap this long
CONTEXT_MIN = SAMPLE_RATE_HZ * 3 // 10  # ... at least this far before the cut


def context_start(audio: Audio) -> int | None:
    """Where the context before a cut begins, as an offset into `audio` (the most the context
    may hold, ending at the cut): the middle of its earliest quiet gap of `CONTEXT_GAP` at
    least `CONTEXT_MIN` before the cut, so that the model hears no word cut in half (tiny.en
    then skips the words after it). None: no such gap, no context."""
    runs = [(a, b) for a, b in quiet_runs(audio[: max(0, len(audio) - CONTEXT_MIN)])
            if b - a >= CONTEXT_GAP]
    return (runs[0][0] + runs[0][1]) // 2 if runs else None


def cut_point(audio: Audio, shortest: int, hard: bool) -> int | None:
    """The middle of the longest quiet gap in `audio` of at least `shortest` samples (the
    latest of equals), as an offset into it; `hard` (past max_utterance_s): of any gap, else
    the quietest 10 ms. None: not yet."""
    runs = [(b - a, b, a) for a, b in quiet_runs(audio) if b - a >= shortest]
    if runs:
        _, b, a = max(runs)
        return (a + b) // 2
    if not hard:
        return None
    n = len(audio) // QUIET_HOP
    energy = np.square(audio[: n * QUIET_HOP].reshape(n, QUIET_HOP)).sum(axis=1)
    return int(np.argmin(energy)) * QUIET_HOP + QUIET_HOP // 2
