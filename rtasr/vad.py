"""Voice activity: WebRTC VAD over fixed frames of 16 kHz audio.

`FrameVad` is stateless apart from the C VAD's own smoothing. It classifies whole frames of
10, 20 or 30 ms; the segmenter in buffer.py decides what runs of frames mean.
"""

from __future__ import annotations

import numpy as np
import webrtcvad

from .audio import Audio
from .config import SAMPLE_RATE_HZ


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
