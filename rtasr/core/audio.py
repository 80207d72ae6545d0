"""Client audio in, model audio out: decode PCM (or G.711 telephony) and resample to 16 kHz."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from ..config import SAMPLE_RATE_HZ
from ..errors import AudioFormatError
from .protocol import Encoding

Audio = npt.NDArray[np.float32]

_DTYPES: dict[str, np.dtype[np.generic]] = {
    "pcm_s16le": np.dtype("<i2"),
    "pcm_f32le": np.dtype("<f4"),
    "mulaw": np.dtype("u1"),
    "alaw": np.dtype("u1"),
}


def _g711_tables() -> dict[str, Audio]:
    """ITU-T G.711 expansion: every byte value to its linear sample in [-1, 1]."""
    code = np.arange(256, dtype=np.int32)
    u = ~code & 0xFF  # mu-law: bits inverted; sign, 3-bit exponent, 4-bit mantissa
    mu = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    mu = np.where(u & 0x80, -mu, mu)
    a = code ^ 0x55  # A-law: even bits inverted
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    linear = np.where(exponent == 0, (mantissa << 4) + 8,
                      ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, linear, -linear)
    return {"mulaw": (mu / 32768).astype(np.float32), "alaw": (alaw / 32768).astype(np.float32)}


_G711 = _g711_tables()


def decode_pcm(data: bytes, encoding: Encoding) -> Audio:
    """Decode one frame of mono PCM into float32 samples in [-1, 1].

    Raises AudioFormatError for a frame that is not whole samples or holds non-finite floats.
    """
    dtype = _DTYPES[encoding]
    if len(data) % dtype.itemsize:
        raise AudioFormatError(
            f"audio frame of {len(data)} bytes is not whole {encoding} samples "
            f"({dtype.itemsize} bytes each)"
        )
    samples = np.frombuffer(data, dtype=dtype)
    if encoding in _G711:
        return _G711[encoding][samples]
    if encoding == "pcm_s16le":
        return samples.astype(np.float32) / np.float32(32768.0)
    if not np.isfinite(samples).all():
        raise AudioFormatError("audio frame holds NaN or infinite samples")
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


class PcmDecoder:
    """Per-connection decoder: bytes in the client's format → 16 kHz float32.

    Resampling is streaming (soxr keeps its filter state between frames), so frames of any
    length, down to a single sample, give the same audio as one long frame.
    """

    def __init__(self, sample_rate_hz: int, encoding: Encoding) -> None:
        self.encoding = encoding
        self.sample_rate_hz = sample_rate_hz
        self._resampler: soxr.ResampleStream | None = None
        if sample_rate_hz != SAMPLE_RATE_HZ:
            self._resampler = soxr.ResampleStream(
                sample_rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32", quality="HQ"
            )
        self.samples_in = 0

    def decode(self, data: bytes) -> Audio:
        samples = decode_pcm(data, self.encoding)
        self.samples_in += len(samples)
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples)  # type: ignore[no-any-return]

    def flush(self) -> Audio:
        """The resampler's last samples, at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._resampler.resample_chunk(  # type: ignore[no-any-return]
            np.zeros(0, np.float32), last=True
        )

    @property
    def duration_s(self) -> float:
        """Seconds of audio received so far, at the client's rate."""
        return self.samples_in / self.sample_rate_hz
