"""What the core asks of the engine and what it gets back: `Request`, `Transcript`, `Word`.

Plain frozen dataclasses, so the sans-I/O core (session.py) and the engine's clients build and
read them without importing the engine (and with it faster-whisper).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .audio import Audio
from .errors import ParameterError
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


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What session set-up needs to know of the model (a local engine or a Ray deployment)."""

    name: str
    multilingual: bool
    language: str | None  # the server's --language (always "en" for an English-only model)
    languages: tuple[str, ...]  # every language code the model knows
    beam_size: int
    context_chars: int

    def check(self, language: str | None, task: Task = "transcribe") -> None:
        """Refuse, when a session opens, a language or task the model cannot do."""
        if not self.multilingual and task != "transcribe":
            raise ParameterError(f"model {self.name} is English-only: it cannot {task}; "
                                 "a multilingual model can (--model base)")
        if language is not None and language not in self.languages:
            if not self.multilingual:
                raise ParameterError(f"model {self.name} is English-only: "
                                     f"language {language!r} is not available")
            raise ParameterError(f"model {self.name} does not know language {language!r} (it "
                                 f"knows {len(self.languages)}: {' '.join(self.languages)})")
