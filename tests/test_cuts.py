"""The cut-point policy on plain audio (cuts.py); Session's use of it is in test_session."""

from __future__ import annotations

import numpy as np

from rtasr.core.cuts import cut_point, min_gap

MS = 16  # samples per millisecond


def speech_with_gaps(*gaps_ms: int) -> np.ndarray:
    """Seeded noise loud as speech, 500 ms between the given silent gaps."""
    rng = np.random.default_rng(0)
    parts = [0.3 * rng.standard_normal(500 * MS).astype(np.float32)]
    for gap in gaps_ms:
        parts += [np.zeros(gap * MS, np.float32),
                  0.3 * rng.standard_normal(500 * MS).astype(np.float32)]
    return np.concatenate(parts)


def test_the_shortest_gap_falls_as_the_utterance_grows() -> None:
    assert [min_gap(s * 16000) // MS for s in (0, 1, 2, 3, 10)] == [200, 150, 120, 90, 90]
    assert min_gap(999 * MS) // MS == 200 and min_gap(1000 * MS) // MS == 150


def test_the_cut_goes_in_the_middle_of_the_longest_gap_long_enough() -> None:
    audio = speech_with_gaps(100, 250, 150)
    at = cut_point(audio, shortest=200 * MS, hard=False)
    assert at is not None and abs(at - (1100 + 125) * MS) <= 10 * MS
    assert cut_point(audio, shortest=300 * MS, hard=False) is None
    hard = cut_point(speech_with_gaps(), shortest=300 * MS, hard=True)
    assert hard is not None and 0 <= hard < 500 * MS
