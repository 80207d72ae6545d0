"""What the core asks of the engine and what it gets back: `Request`, `Transcript`, `Word`.

Plain frozen dataclasses, so the sans-I/O core (session.py) and the engine's clients build and
read them without importing the engine (and with it faster-whisper).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .audio import Audio
from .protocol import Task


@dataclass(frozen=True, kw_only=True)
class Word:
    word: str
    start: float  # seconds from the start of the request's audio
    end: float
    probability: float


@dataclass(frozen=True, kw_only=True)
class Transcript:
    text: str
    words: tuple[Word, ...]
    language: str | None
    decode_s: float = 0.0


EMPTY = Transcript(text="", words=(), language=None)


class Priority(enum.IntEnum):
    FINAL = 0
    PARTIAL = 1


@dataclass(frozen=True, kw_only=True)
class Request:
    audio: Audio
    priority: Priority
    session: str
    language: str | None = None  # None: the engine detects it from this request's audio
    task: Task = "transcribe"  # or "translate": English text from speech in any language
    prompt: str | None = None  # the running context: the session's recent finals
    initial_prompt: str | None = None  # the session's own prompt (names, terms), kept whole
    beam_size: int = 1
    word_timestamps: bool = False
    # False for a session sending audio faster than real time (a file): its finals go after
    # live sessions' and its backlog is not the admission signal (scheduler.py)
    realtime: bool = True
