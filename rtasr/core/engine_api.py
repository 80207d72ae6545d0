"""What the core asks of the engine and what it gets back: `DecodeRequest`, `Transcript`, `Word`,
and the engine's `Load` a transport passes to a session.

Plain frozen dataclasses, so the sans-I/O core (session.py) and the engine's clients build and
read them without importing the engine (and with it faster-whisper).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import ParameterError
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
    decode_s: float = 0.0  # the model call's time: what this request waited for it
    cost_s: float = 0.0  # this request's share of it (decode_s / the requests in the call)
    # the engine's detection, when it detected the language: the likeliest languages and
    # their probabilities, best first (a session weighs them across utterances)
    detected: tuple[tuple[str, float], ...] = ()


EMPTY = Transcript(text="", words=(), language=None)


class Priority(enum.IntEnum):
    FINAL = 0
    PARTIAL = 1


@dataclass(frozen=True, kw_only=True)
class DecodeRequest:
    audio: Audio
    priority: Priority
    session: str
    language: str | None = None  # None: the engine detects it from this request's audio
    # samples at the head of `audio` that are the utterance before's (--context-s): a
    # language is detected on the audio after them, the utterance's own
    context_samples: int = 0
    task: Task = "transcribe"  # or "translate": English text from speech in any language
    prompt: str | None = None  # the running context: the session's recent finals
    initial_prompt: str | None = None  # the session's own prompt (names, terms), kept whole
    # with no language: the session's running vote (LanguageVotes.prior), weighed with this
    # request's own detection (choose_language)
    language_prior: tuple[tuple[str, float], ...] = ()
    beam_size: int = 1
    word_timestamps: bool = False
    # False for a session sending audio faster than real time (a file): its finals go after
    # live sessions' and its backlog is not the admission signal (scheduler.py)
    realtime: bool = True
    # the session already got words from this utterance's audio: it is decoded without the
    # speech gate (--no-speech-gate), which runs once per utterance, not once per decode
    voiced: bool = False
    # a partial that may bring the utterance's first words: not stretched by load, and ahead
    # of partials that refresh words already shown (session.py, scheduler.py)
    first_words: bool = False
    # a partial whose words never serve as a final (session.py): its decode may stop early, at
    # --partial-max-tokens-per-s, where a loop would run to the model's limit
    capped: bool = False
    # False for a final inside run-on speech (a cut's head): its wait is the run-on latency,
    # so it never gets the spare-capacity beam and window (--spare-beam-size)
    spare_ok: bool = True


@dataclass(frozen=True, kw_only=True)
class Load:
    """What the transport tells a session with each frame (`Session.feed`): the engine's load
    and the client's pace, read by the decodes the session asks for until the next frame."""

    partial_backoff: float = 1.0  # the engine's stretch of the partial cadence (1: none)
    # the engine's finals are waiting: of the context after a pause, only its last seconds,
    # for finals (--busy-context-s)
    behind: bool = False
    # False while the client sends faster than real time (a file): its decodes then yield to
    # live sessions' (scheduler.py)
    realtime: bool = True


IDLE = Load()


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What session set-up needs to know of the model (a local engine or a Ray deployment)."""

    name: str
    multilingual: bool
    language: str | None  # the server's --language (always "en" for an English-only model)
    languages: tuple[str, ...]  # every language code the model knows

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


# Language detection across a session's utterances, measured on 40 real clips of 1.5-4.5 s per
# language (docs/benchmarks.md): one utterance alone is detected right 70 % of the time in
# Spanish (its es_MX voice is heard as Italian, Latin, Portuguese), a running sum of
# probabilities brings sessions to 95 %. Log-probabilities sum worse (one clip heard as Arabic
# vetoes Spanish for the session), and an undecayed sum never lets a session change language.
VOTE_DECAY = 0.6  # an earlier utterance's weight, per utterance since
SURE = 0.9  # an utterance's own detection this sure of a language wins outright
_KEPT = 5


def choose_language(detected: tuple[tuple[str, float], ...],
                    prior: tuple[tuple[str, float], ...]) -> str:
    """The language to decode in: the detection's own best when it is sure or the session has
    no vote yet, else the best of the session's vote plus this detection."""
    top, probability = detected[0]
    if probability >= SURE or not prior:
        return top
    scores = dict(prior)
    for language, p in detected:
        scores[language] = scores.get(language, 0.0) + p
    return max(scores, key=scores.__getitem__)


@dataclass
class LanguageVotes:
    """A session's running vote over its utterances' detections (sans-I/O, per session)."""

    weights: dict[str, float] = field(default_factory=dict)

    def add(self, detected: tuple[tuple[str, float], ...]) -> None:
        if not detected:  # the language was given, not detected
            return
        weights = {language: w * VOTE_DECAY for language, w in self.weights.items()}
        for language, p in detected:
            weights[language] = weights.get(language, 0.0) + p
        self.weights = {language: w for language, w in weights.items() if w >= 0.01}

    @property
    def prior(self) -> tuple[tuple[str, float], ...]:
        ranked = sorted(self.weights.items(), key=lambda item: -item[1])[:_KEPT]
        return tuple((language, round(w, 4)) for language, w in ranked)
