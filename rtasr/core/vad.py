"""Voice activity: WebRTC VAD over fixed frames of 16 kHz audio.

`FrameVad` is stateless apart from the C VAD's own smoothing. It classifies whole frames of
10, 20 or 30 ms; the segmenter in buffer.py decides what runs of frames mean.
"""

from __future__ import annotations

import numpy as np
import webrtcvad

from ..config import SAMPLE_RATE_HZ
from .audio import Audio


class FrameVad:
    """Speech/non-speech for one frame of 16 kHz float32 audio at a time."""

    def __init__(self, aggressiveness: int, frame_ms: int) -> None:
        if frame_ms not in (10, 20, 30):
            raise ValueError("WebRTC VAD takes 10, 20 or 30 ms frames")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_samples = SAMPLE_RATE_HZ * frame_ms // 1000

    def is_speech(self, frame: Audio) -> bool:
        if len(frame) != self.frame_samples:
            raise ValueError(f"expected {self.frame_samples} samples, got {len(frame)}")
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm, SAMPLE_RATE_HZ))


QUIET_HOP = SAMPLE_RATE_HZ // 100  # 10 ms
_BELOW_SPEECH_DB = 30.0  # quiet: this far below the speech's loud frames ...
_ABOVE_FLOOR_DB = 6.0  # ... or near the noise floor, if that is at least 20 dB below speech


def quiet_runs(audio: Audio) -> list[tuple[int, int]]:
    """Runs of quiet 10 ms hops in `audio`, as (start, end) sample offsets.

    WebRTC VAD holds "speech" for 60-90 ms after a word ends (its hangover), so a 150 ms gap
    between two words shows as one or two silent frames, or none. Frame energy sees the whole
    gap: quiet is well below the audio's loud frames, or near its noise floor.
    """
    n = len(audio) // QUIET_HOP
    if n == 0:
        return []
    energy = np.square(audio[: n * QUIET_HOP].reshape(n, QUIET_HOP)).mean(axis=1) + 1e-12
    loud, floor = np.percentile(energy, 90), np.percentile(energy, 5)
    level = max(loud * 10 ** (-_BELOW_SPEECH_DB / 10),
                min(floor * 10 ** (_ABOVE_FLOOR_DB / 10), loud * 10**-2))
    quiet = np.concatenate([[False], energy < level, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    return [(int(a) * QUIET_HOP, int(b) * QUIET_HOP) for a, b in zip(edges[::2], edges[1::2],
                                                                       strict=True)]
