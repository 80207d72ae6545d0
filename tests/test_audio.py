from __future__ import annotations

import numpy as np
import pytest

from rtasr.core.audio import PcmDecoder, decode_pcm
from rtasr.errors import AudioFormatError

from .helpers import clip_at, encode


def test_s16_decodes_to_unit_range() -> None:
    data = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    assert decode_pcm(data, "pcm_s16le").tolist() == pytest.approx([0, 0.5, -1, 32767 / 32768])


def test_f32_is_clipped_and_checked() -> None:
    data = np.array([0.25, 2.0, -3.0], "<f4").tobytes()
    assert decode_pcm(data, "pcm_f32le").tolist() == [0.25, 1.0, -1.0]
    with pytest.raises(AudioFormatError, match="NaN or infinite"):
        decode_pcm(np.array([0.1, np.nan], "<f4").tobytes(), "pcm_f32le")
    with pytest.raises(AudioFormatError, match="NaN or infinite"):
        decode_pcm(np.array([np.inf], "<f4").tobytes(), "pcm_f32le")


@pytest.mark.parametrize(("encoding", "size"), [("pcm_s16le", 3), ("pcm_f32le", 6)])
def test_partial_samples_are_refused(encoding: str, size: int) -> None:
    with pytest.raises(AudioFormatError, match="not whole"):
        decode_pcm(b"\x01" * size, encoding)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_chunked_resampling_matches_one_shot(rate: int) -> None:
    audio = clip_at("tt-weasels", rate)
    data = encode(audio)
    whole = PcmDecoder(rate, "pcm_s16le")
    one = np.concatenate([whole.decode(data), whole.flush()])
    pieces = PcmDecoder(rate, "pcm_s16le")
    sizes = [2, 2, 998, 4000, 30]  # odd sizes down to a single sample
    out, off, i = [], 0, 0
    while off < len(data):
        n = sizes[i % len(sizes)]
        out.append(pieces.decode(data[off : off + n]))
        off, i = off + n, i + 1
    out.append(pieces.flush())
    chunked = np.concatenate(out)
    assert len(one) == len(chunked) == pytest.approx(len(audio) * 16000 / rate, abs=2)
    np.testing.assert_allclose(chunked, one, atol=1e-5)
    assert pieces.duration_s == pytest.approx(len(audio) / rate)
