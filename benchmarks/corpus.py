"""Real recorded speech for benchmarks: Debian's Asterisk English prompts (CC-BY-SA-3.0).

`ensure_corpus()` fetches the two Debian packages with `apt-get download` and unpacks them with
`dpkg -x` into benchmarks/.data (once); `load_clips()` returns the spoken prompts with their
transcripts; `build_stream()` lays clips end to end with pauses, as one long recording.
"""

from __future__ import annotations

import gzip
import random
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

DATA = Path(__file__).parent / ".data"
SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison"
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
RATE = 16_000


@dataclass(frozen=True)
class Clip:
    name: str
    text: str
    audio: np.ndarray  # 16 kHz float32, leading and trailing silence trimmed


@dataclass(frozen=True)
class Span:
    text: str
    start: float  # seconds into the stream
    end: float


def ensure_corpus(root: Path = DATA) -> Path:
    if (root / SOUNDS).is_dir() and (root / TRANSCRIPTS).is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    print(f"fetching {' '.join(PACKAGES)} with apt-get download ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        rate = w.getframerate()
    return soxr.resample(pcm, rate, RATE).astype(np.float32) if rate != RATE else pcm


def trim(audio: np.ndarray, threshold: float = 0.01, frame: int = 160) -> np.ndarray:
    """Cut leading and trailing frames whose peak stays under `threshold`."""
    n = len(audio) // frame
    peaks = np.abs(audio[: n * frame]).reshape(n, frame).max(axis=1)
    loud = np.flatnonzero(peaks >= threshold)
    if len(loud) == 0:
        return audio[:0]
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


def load_clips(count: int, *, seed: int = 1, min_s: float = 1.5, max_s: float = 9.0,
               root: Path | None = None) -> list[Clip]:
    root = ensure_corpus() if root is None else root
    transcripts: dict[str, str] = {}
    with gzip.open(root / TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            name, sep, text = line.partition(":")
            text = text.strip()
            if sep and text and not text.startswith("[") and not line.startswith(";"):
                transcripts[name.strip()] = text
    names = sorted(n for n in transcripts if (root / SOUNDS / f"{n}.wav").is_file())
    random.Random(seed).shuffle(names)
    clips: list[Clip] = []
    for name in names:
        audio = trim(read_wav(root / SOUNDS / f"{name}.wav"))
        if min_s <= len(audio) / RATE <= max_s:
            clips.append(Clip(name, transcripts[name], audio))
        if len(clips) == count:
            break
    return clips


def build_stream(clips: list[Clip], *, pause_s: tuple[float, float], seed: int = 2,
                 lead_s: float = 0.5) -> tuple[np.ndarray, list[Span]]:
    """Clips end to end with random pauses (uniform in `pause_s`) and faint noise between."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    parts = [np.zeros(int(lead_s * RATE), np.float32)]
    spans: list[Span] = []
    t = lead_s
    for clip in clips:
        spans.append(Span(clip.text, t, t + len(clip.audio) / RATE))
        gap = np.zeros(int(rng.uniform(*pause_s) * RATE), np.float32)
        parts += [clip.audio, gap]
        t += (len(clip.audio) + len(gap)) / RATE
    parts.append(np.zeros(RATE, np.float32))
    audio = np.concatenate(parts)
    audio += noise.normal(0, 3e-4, len(audio)).astype(np.float32)
    return audio, spans
