"""The native wire protocol: connection parameters and the messages both ways.

Every message is a small frozen dataclass with `to_json()` (server → client) or `from_json()`
(client → server). docs/protocol.md is the table of them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from ..errors import ParameterError, ProtocolError, RtasrError
from . import limits

Encoding = Literal["pcm_s16le", "pcm_f32le", "mulaw", "alaw"]
ENCODINGS: tuple[Encoding, ...] = ("pcm_s16le", "pcm_f32le", "mulaw", "alaw")
Task = Literal["transcribe", "translate"]
TASKS: tuple[Task, ...] = ("transcribe", "translate")


@dataclass(frozen=True, kw_only=True)
class StreamParams:
    """What a client declares in the connection URL's query string (or its dialect's
    equivalent). Bounded however it is built: a value out of core/limits.py's bounds raises
    ParameterError."""

    sample_rate: int = 16_000
    encoding: Encoding = "pcm_s16le"
    language: str | None = None  # None: detected per utterance (multilingual models)
    task: Task = "transcribe"
    prompt: str | None = None  # names and terms to expect, passed to the decoder
    interim_results: bool = True
    diarize: bool = False  # a speaker on each final and word (the server needs --diarize)

    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {"sample_rate", "encoding", "language", "task", "prompt", "interim_results", "token",
         "diarize"}
    )

    def __post_init__(self) -> None:
        limits.sample_rate_hz(self.sample_rate)
        limits.choice(self.encoding, "encoding", ENCODINGS)
        limits.choice(self.task, "task", TASKS)
        if self.prompt is not None:
            limits.prompt(self.prompt)
        if self.language is not None and limits.language(self.language) != self.language:
            raise ParameterError(f"language must be a lower-case language code such as 'en', "
                                 f"not {self.language[:40]!r}", param="language")

    @classmethod
    def from_query(cls, query: str, *, default_language: str | None = None) -> StreamParams:
        values = limits.query_values(query)
        unknown = sorted(set(values) - cls.KNOWN)
        if unknown:
            shown = ", ".join(name[:40] for name in unknown[:5])
            raise ParameterError(f"unknown query parameter: {shown}", param=unknown[0][:40],
                                 reason="unknown_parameter")
        return cls(
            sample_rate=limits.sample_rate_hz(values.get("sample_rate", "16000")),
            encoding=limits.choice(values.get("encoding", "pcm_s16le"), "encoding", ENCODINGS),
            language=limits.language(values.get("language")) or default_language,
            task=limits.choice(values.get("task", "transcribe"), "task", TASKS),
            prompt=limits.prompt(values.get("prompt")),
            interim_results=limits.flag(values.get("interim_results"), "interim_results", True),
            diarize=limits.flag(values.get("diarize"), "diarize", False),
        )


# Client → server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Flush:
    """Finalize the current utterance now."""


@dataclass(frozen=True)
class End:
    """Finalize everything, send the remaining finals, then `end`, then close."""


@dataclass(frozen=True)
class AudioIn:
    """Audio that came in a text frame (a dialect whose audio is base64 in JSON)."""

    data: bytes


@dataclass(frozen=True)
class Reconfigure:
    """The client changed its session's settings: the session takes these from now on
    (`Session.retune`; a dialect acknowledges with `Dialect.reconfigured`). `flush`: end the
    open utterance first, under the old settings (a change of how turns end)."""

    params: StreamParams
    changes: tuple[tuple[str, int], ...] = ()  # Config fields, as `config_changes` gives
    flush: bool = False


ClientMessage = Flush | End | AudioIn | Reconfigure


def json_object(text: str) -> dict[str, Any]:
    """A client text frame as a JSON object (every dialect's control messages are one)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("text frames must be JSON objects") from None
    if not isinstance(data, dict):
        raise ProtocolError("text frames must be JSON objects")
    return data


def parse_client_message(text: str) -> ClientMessage | None:
    """A text frame as Flush or End; None for a keep-alive. Raises ProtocolError."""
    data = json_object(text)
    kind = data.get("type")
    if kind == "flush":
        return Flush()
    if kind == "end":
        return End()
    if kind == "keepalive":
        return None
    shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
    raise ProtocolError(f"unknown message type {shown!r}; expected 'flush', 'end' or "
                        "'keepalive'")


# Server → client -------------------------------------------------------------------------


class _Message:
    type: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class Ready(_Message):
    type: ClassVar[str] = "ready"
    session_id: str
    model: str
    sample_rate: int
    encoding: str
    language: str | None  # None: detected per utterance, see each final's language
    task: str = "transcribe"


@dataclass(frozen=True, kw_only=True)
class SpeechStart(_Message):
    type: ClassVar[str] = "speech_start"
    utterance: int
    start: float
    continues: bool = False  # the speech did not pause: a run-on cut split it here


@dataclass(frozen=True, kw_only=True)
class SpeechEnd(_Message):
    """The speaker paused for the endpoint silence: the utterance's speech ended at `end`.
    Sent at once, before its final (which may still be decoding); only for a pause, so not
    after a run-on cut, a flush or the stream's end."""

    type: ClassVar[str] = "speech_end"
    utterance: int
    end: float


@dataclass(frozen=True, kw_only=True)
class Partial(_Message):
    type: ClassVar[str] = "partial"
    utterance: int
    start: float
    end: float
    text: str
    committed: str


@dataclass(frozen=True, kw_only=True)
class WireWord:
    word: str
    start: float
    end: float
    probability: float
    speaker: int | None = None  # with diarize=true: 0, 1, ... (left out of the JSON when None)
    speaker_confidence: float | None = None  # 0..1, how clearly the voice chose `speaker`


@dataclass(frozen=True, kw_only=True)
class Final(_Message):
    type: ClassVar[str] = "final"
    utterance: int
    start: float
    end: float
    text: str
    words: list[WireWord] = field(default_factory=list)
    language: str | None = None
    endpoint: bool = False  # the speaker paused here (not a flush, a cut or the stream's end)
    speaker: int | None = None  # with diarize=true: who said it (left out when None)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for item in (data, *data["words"]):
            if item["speaker"] is None:
                del item["speaker"]
        for word in data["words"]:
            if word["speaker_confidence"] is None:
                del word["speaker_confidence"]
        return data


@dataclass(frozen=True, kw_only=True)
class Error(_Message):
    type: ClassVar[str] = "error"
    code: str
    message: str
    utterance: int | None = None  # the utterance it cost (`engine_error`); else left out

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.utterance is None:
            del data["utterance"]
        return data


@dataclass(frozen=True, kw_only=True)
class EndOfStream(_Message):
    type: ClassVar[str] = "end"
    duration: float


ServerMessage = Ready | SpeechStart | SpeechEnd | Partial | Final | Error | EndOfStream


# Dialects --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer instead of the websocket handshake: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Hello:
    """What a dialect may say when a session opens."""

    session_id: str
    model: str
    params: StreamParams


class Dialect:
    """One wire protocol over the shared session core: parse what clients send, render what
    the session says. The transport (server/connection.py) is the same for every dialect;
    this one is rtasr's native protocol; dialects/deepgram.py is Deepgram's live-streaming API
    and dialects/openai_realtime.py OpenAI's realtime transcription."""

    name = "native"

    def __init__(self, query: str, *, default_language: str | None) -> None:
        self.params = StreamParams.from_query(query, default_language=default_language)

    @classmethod
    def handshake_refusal(cls, error: ParameterError) -> Refusal | None:
        """How bad connection parameters are refused: an HTTP answer before the handshake,
        or None to accept the websocket and close it with an `error` message (native: a
        browser sees no HTTP body, but it does see the message and the close reason)."""
        return None

    @classmethod
    def unauthorized(cls, message: str) -> Refusal:
        """How a missing or wrong API key is refused at the handshake (HTTP 401)."""
        return Refusal(401, {"error": "unauthorized", "message": message})

    def config_changes(self, pause_ms: int) -> dict[str, int]:
        """Per-session settings the client asked for (none in the native protocol)."""
        return {}

    def greeting(self, hello: Hello) -> list[str]:
        p = hello.params
        return [Ready(session_id=hello.session_id, model=hello.model,
                      sample_rate=p.sample_rate, encoding=p.encoding,
                      language=p.language, task=p.task).to_json()]

    def control(self, text: str) -> ClientMessage | None:
        """A client text frame as Flush or End; None for a keep-alive. Raises ProtocolError."""
        return parse_client_message(text)

    def on_audio(self, data: bytes, position_s: float) -> list[str]:
        """Called for every audio frame, after the session took it."""
        return []

    def replies(self) -> list[str]:
        """What to answer the last control message with, sent before the session acts on it
        (none in the native protocol)."""
        return []

    def reconfigured(self, change: Reconfigure) -> list[str]:
        """The session was rebuilt as `change` asked: take it as current and acknowledge."""
        self.params = change.params
        return []

    def settled(self, open_utterance: int | None) -> list[str]:
        """Called whenever no ended utterance awaits its final (so a flush that found no
        words is over); `open_utterance` is the one still being spoken, if any."""
        return []

    def render(self, message: ServerMessage) -> list[str]:
        return [message.to_json()]

    def farewell(self, code: int, error: RtasrError | None,
                 duration_s: float) -> tuple[list[str], int, str]:
        """The last messages, the close code and the close reason."""
        if error is not None:
            return [Error(code=error.code, message=str(error)).to_json()], code, error.code
        return [EndOfStream(duration=duration_s).to_json()], code, ""
