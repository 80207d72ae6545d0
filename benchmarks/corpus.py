"""Real recorded speech for benchmarks: Debian's Asterisk prompts (CC-BY-SA-3.0), in English,
Spanish, French, Italian and Russian.

`ensure_corpus(language)` fetches the language's two Debian packages with `apt-get download` and
unpacks them with `dpkg -x` into benchmarks/.data (once); `load_clips()` returns the spoken prompts
with their transcripts; `build_stream()` lays clips end to end with pauses, as one long recording.
The prompts share their names across languages (`agent-pass` in every language), so the same name
gives a parallel pair for translation. Each language has its own voice directory (en_US_f_Allison,
es_MX_f_Allison, fr_CA_f_June, it_IT_m_Carlo, ru_RU_f_IvrvoiceRU): found by its prefix.
"""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

# RTASR_CORPUS: somewhere else (gpu_check.sh, on a machine the corpus is carried to)
DATA = Path(os.environ.get("RTASR_CORPUS") or Path(__file__).parent / ".data")
LANGUAGES = ("en", "es", "fr", "it", "ru")
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
    kind: str = ""  # build_turns: the kind of turn it belongs to


def packages(language: str) -> tuple[str, str]:
    return f"asterisk-core-sounds-{language}-wav", f"asterisk-core-sounds-{language}"


def transcripts_path(root: Path, language: str) -> Path:
    return root / f"usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz"


def sounds_dir(root: Path, language: str) -> Path | None:
    """The language's voice directory, e.g. usr/share/asterisk/sounds/fr_CA_f_June."""
    found = sorted((root / "usr/share/asterisk/sounds").glob(f"{language}_*"))
    return found[0] if found else None


def ensure_corpus(language: str = "en", root: Path = DATA) -> Path:
    if sounds_dir(root, language) is not None and transcripts_path(root, language).is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    names = packages(language)
    print(f"fetching {' '.join(names)} with apt-get download ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *names], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def read_transcripts(root: Path, language: str = "en") -> dict[str, str]:
    """Prompt name (e.g. `agent-pass`, `digits/1`) → its text; `[sound effects]` left out."""
    transcripts: dict[str, str] = {}
    path = transcripts_path(root, language)
    with gzip.open(path, "rt", encoding="utf-8-sig", errors="replace") as lines:
        for line in lines:
            name, sep, text = line.partition(":")
            text = text.strip()
            if sep and text and not text.startswith("[") and not line.startswith(";"):
                transcripts[name.strip()] = text
    return transcripts


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
               root: Path | None = None, language: str = "en",
               names: list[str] | None = None) -> list[Clip]:
    """`count` random prompts of `language` lasting min_s..max_s (or the named ones, in order)."""
    root = ensure_corpus(language) if root is None else root
    transcripts = read_transcripts(root, language)
    sounds = sounds_dir(root, language)
    assert sounds is not None, f"no {language} voice under {root}"
    if names is None:
        names = sorted(n for n in transcripts if (sounds / f"{n}.wav").is_file())
        random.Random(seed).shuffle(names)
    clips: list[Clip] = []
    for name in names:
        if transcripts[name].startswith("("):  # "(ahooga)", "(1 second of silence)"
            continue
        audio = trim(read_wav(sounds / f"{name}.wav"))
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


# A turn of real speech, as people talk: (kind, share of turns, prompts, gaps between them s).
# "sentences" are one utterance of a few prompts with sentence pauses inside; "run-on" prompts
# are each their own utterance, run together with breath-length gaps; "long" is one prompt of
# 8-25 s (its own breaths inside); between turns the speaker pauses.
TURNS = (("sentences", 0.35, (2, 3), (0.3, 1.0)), ("run-on", 0.25, (3, 4), (0.1, 0.25)),
         ("long", 0.15, (1, 1), (0.0, 0.0)), ("single", 0.25, (1, 1), (0.0, 0.0)))
TURN_PAUSE_S = (1.0, 2.0)
MAX_UTTERANCE_S = 25.0


def build_turns(short: list[Clip], long: list[Clip], *, seed: int = 2,
                lead_s: float = 0.5) -> tuple[np.ndarray, list[Span]]:
    """A stream like real speech: turns of `TURNS`' kinds drawn at random from the clips (short
    prompts, and long ones for "long" turns) until they run out, with pauses between turns.
    Each Span is one reference utterance: a whole "sentences" turn is one."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    short, long = list(short), list(long)
    parts = [np.zeros(int(lead_s * RATE), np.float32)]
    spans: list[Span] = []
    t = lead_s

    def put(audio: np.ndarray, gap_s: float) -> None:
        nonlocal t
        parts.extend([audio, np.zeros(int(gap_s * RATE), np.float32)])
        t += (len(audio) + int(gap_s * RATE)) / RATE

    while short or long:
        kind, _, (lo, hi), gaps = rng.choices(TURNS, weights=[w for _, w, _, _ in TURNS])[0]
        if kind == "long":
            if not long:
                continue
            turn = [long.pop()]
        else:
            if not short:
                continue
            turn = [short.pop() for _ in range(min(len(short), rng.randint(lo, hi)))]
        pause = rng.uniform(*TURN_PAUSE_S)
        if kind == "sentences":
            pauses = [rng.uniform(*gaps) for _ in turn[1:]]
            while len(turn) > 1 and (sum(len(c.audio) for c in turn) / RATE + sum(pauses)
                                     > MAX_UTTERANCE_S):
                short.insert(0, turn.pop())
                pauses.pop()
            start = t
            for clip, gap in zip(turn, [*pauses, pause], strict=True):
                put(clip.audio, gap)
            spans.append(Span(" ".join(c.text for c in turn), start, t - pause, kind))
            continue
        for k, clip in enumerate(turn):
            start = t
            put(clip.audio, pause if k == len(turn) - 1 else rng.uniform(*gaps))
            spans.append(Span(clip.text, start, start + len(clip.audio) / RATE, kind))
    parts.append(np.zeros(RATE, np.float32))
    audio = np.concatenate(parts)
    audio += noise.normal(0, 3e-4, len(audio)).astype(np.float32)
    return audio, spans
