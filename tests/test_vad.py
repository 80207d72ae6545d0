from __future__ import annotations

import numpy as np
import pytest

from rtasr.core.vad import FrameVad

from .helpers import clip_at


def frames(audio: np.ndarray, n: int = 480) -> list[np.ndarray]:
    return [audio[i : i + n] for i in range(0, len(audio) - n + 1, n)]


def test_silence_and_faint_noise_are_not_speech() -> None:
    vad = FrameVad(3, 30)
    noise = np.random.default_rng(0).normal(0, 3e-4, 16000).astype(np.float32)
    assert not any(vad.is_speech(f) for f in frames(np.zeros(16000, np.float32)))
    assert not any(vad.is_speech(f) for f in frames(noise))


@pytest.mark.parametrize("name", ["agent-alreadyon", "tt-weasels"])
def test_real_speech_is_mostly_speech(name: str) -> None:
    vad = FrameVad(3, 30)
    flags = [vad.is_speech(f) for f in frames(clip_at(name, 16000))]
    assert sum(flags) / len(flags) > 0.5


def test_frame_size_is_checked() -> None:
    with pytest.raises(ValueError, match="480"):
        FrameVad(3, 30).is_speech(np.zeros(100, np.float32))
    with pytest.raises(ValueError):
        FrameVad(3, 25)
