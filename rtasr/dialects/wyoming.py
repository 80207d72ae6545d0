"""Home Assistant's Wyoming protocol (speech to text) as a dialect over the session core.

A Wyoming connection is a TCP stream of events: a JSON header line, then `data_length` bytes
of JSON data, then `payload_length` bytes of payload (audio). This module owns everything
about them that is not I/O:
- `parse_header` / `merge_data`: an event's framing, with the server's limits;
- `WyomingLink`: a connection between commands (`describe` → `info`, `ping` → `pong`,
  `transcribe` kept for the next command, `audio-start` opens a command);
- `WyomingDialect`: one command (`audio-chunk` … `audio-stop`) over one `Session`: the
  session's committed words stream out as `transcript-chunk`s between `transcript-start` and
  `transcript-stop`, then `transcript` holds the whole command's text.
The transport (server/wyoming_tcp.py) moves the bytes. What is honoured is in docs/wyoming.md.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from wyoming.asr import Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.error import Error as ErrorEvent
from wyoming.event import Eventable
from wyoming.info import AsrModel, AsrProgram, Attribution, Info
from wyoming.ping import Pong

from .. import __version__
from ..core import limits
from ..core.align import splice
from ..core.engine_api import ModelInfo
from ..core.limits import MAX_PROMPT_CHARS
from ..core.protocol import (
    AudioIn,
    ClientMessage,
    Dialect,
    End,
    Error,
    Final,
    Hello,
    Partial,
    ServerMessage,
    StreamParams,
    json_object,
)
from ..errors import CLOSE_POLICY, FrameTooLargeError, ParameterError, ProtocolError, RtasrError

WYOMING_PORT = 10300  # the convention for speech-to-text servers (wyoming-faster-whisper's)
MAX_HEADER_BYTES = 64 * 1024  # an event's JSON header line
MAX_DATA_BYTES = 64 * 1024  # an event's JSON data
SAMPLE_WIDTH_BYTES = 2  # 16-bit PCM, the only width Home Assistant sends
PROJECT_URL = ""  # rtasr has no public home page to link to yet
WHISPER = Attribution(name="OpenAI", url="https://github.com/openai/whisper")


def event_text(event: Eventable) -> str:
    """A server event as the text the transport writes: {"type", "data"}."""
    return json.dumps(event.event().to_dict(), ensure_ascii=False, separators=(",", ":"))


def error_text(error: RtasrError) -> str:
    return event_text(ErrorEvent(text=str(error), code=error.code))


def info_data(model: ModelInfo) -> dict[str, Any]:
    """`info`'s data: one ASR program, rtasr, serving one model. The client ends each command
    with `audio-stop` (rtasr does not end it on its own): `requires_external_vad`."""
    whisper = AsrModel(name=model.name, attribution=WHISPER, installed=True,
                       description=f"Whisper {model.name} (faster-whisper)", version=None,
                       languages=list(model.languages))
    program = AsrProgram(name="rtasr", attribution=Attribution(name="rtasr", url=PROJECT_URL),
                         installed=True, version=__version__, models=[whisper],
                         description="Streaming speech recognition: words while you speak",
                         supports_transcript_streaming=True, requires_external_vad=True)
    return Info(asr=[program]).event().data


# framing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """An event's header line: its type, inline data and the lengths of what follows."""

    type: str
    data: dict[str, Any]
    data_length: int
    payload_length: int


def _length(header: dict[str, Any], name: str, limit: int) -> int:
    value = header.get(name) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{name} must be a byte count, not {str(value)[:40]!r}")
    if value > limit:
        raise FrameTooLargeError(f"{name} of {value} bytes is over the {limit}-byte limit")
    return value


def parse_header(line: bytes, max_payload_bytes: int) -> Header:
    """One event's header line. Raises ProtocolError, or FrameTooLargeError for data or a
    payload over the limits (refused before a byte of it is read)."""
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError("an event must start with a JSON header line") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("an event's header must be a JSON object with a 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError("an event's data must be a JSON object")
    return Header(header["type"][:64], data, _length(header, "data_length", MAX_DATA_BYTES),
                  _length(header, "payload_length", max_payload_bytes))


def merge_data(header: Header, data: bytes) -> dict[str, Any]:
    """The event's data: the header's, updated with the `data_length` bytes that followed."""
    try:
        more = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError("an event's data must be a JSON object") from None
    if not isinstance(more, dict):
        raise ProtocolError("an event's data must be a JSON object")
    return {**header.data, **more}


def command_frame(kind: str, data: dict[str, Any], payload: bytes) -> str:
    """An event inside a command as the text frame its session's connection reads."""
    return json.dumps({"type": kind, "data": data,
                       "payload": base64.b64encode(payload).decode("ascii")})


# between commands ------------------------------------------------------------------------


@dataclass
class Step:
    """What a link does with one event: replies, maybe a command to open (the opening
    `WyomingDialect` reads), or bad input to refuse (an `error`, then the connection closes)."""

    replies: list[str] = field(default_factory=list)
    command: str | None = None
    error: RtasrError | None = None


class WyomingLink:
    """One connection between its commands (sans-I/O): events in, `Step`s out."""

    def __init__(self, model: ModelInfo) -> None:
        self.info = info_data(model)
        self._transcribe: dict[str, Any] = {}

    def take(self, kind: str, data: dict[str, Any]) -> Step:
        if kind == "describe":
            return Step([json.dumps({"type": "info", "data": self.info})])
        if kind == "ping":
            return Step([event_text(Pong(text=data.get("text")))])
        if kind == "transcribe":
            self._transcribe = data
            return Step()
        if kind == "audio-start":
            opening = {"transcribe": self._transcribe, "audio_start": data, "info": self.info}
            self._transcribe = {}
            return Step(command=json.dumps(opening))
        if kind in ("audio-chunk", "audio-stop"):
            return Step(error=ProtocolError(f"{kind} before audio-start"))
        return Step()  # the protocol's rule: events a server does not know are dropped


# one command -----------------------------------------------------------------------------


def audio_format(data: dict[str, Any]) -> tuple[int, int, int]:
    """`audio-start`'s rate, width and channels, checked (core/limits.py, as every dialect's
    values). Raises ParameterError."""
    rate = limits.sample_rate_hz(data.get("rate"), "audio-start rate")
    width = limits.integer(data.get("width"), "audio-start width", 1, 8)
    channels = limits.integer(data.get("channels"), "audio-start channels", 1, 64)
    if width != SAMPLE_WIDTH_BYTES:
        raise ParameterError(f"audio-start: width must be 2 (16-bit PCM), not {width}")
    if channels != 1:
        raise ParameterError(f"audio-start: channels must be 1 (mono), not {channels}")
    return rate, width, channels


def language_of(transcribe: dict[str, Any]) -> str | None:
    """`transcribe`'s language as a language code ("en-US" → "en"); None when not given."""
    return limits.language(transcribe.get("language") or "", "transcribe language")


def prompt_of(transcribe: dict[str, Any]) -> str | None:
    """`transcript_names` then `transcript_terms` as the decoder's prompt: as many whole
    ones as fit in its bound."""
    terms: list[str] = []
    for name in ("transcript_names", "transcript_terms"):
        listed = transcribe.get(name) or []
        if isinstance(listed, list):
            terms += [t.strip() for t in listed if isinstance(t, str) and t.strip()]
    prompt = ""
    for term in dict.fromkeys(terms):
        joined = f"{prompt}, {term}" if prompt else term
        if len(joined) > MAX_PROMPT_CHARS:
            break
        prompt = joined
    return prompt or None


class WyomingDialect(Dialect):
    """One Wyoming command: its `query` is the opening a `WyomingLink` made of `transcribe`
    and `audio-start`."""

    name = "wyoming"

    def __init__(self, query: str, *, default_language: str | None) -> None:
        opening = json.loads(query)
        transcribe: dict[str, Any] = opening["transcribe"]
        self.info: dict[str, Any] = opening["info"]
        self.format = audio_format(opening["audio_start"])
        self.params = StreamParams(sample_rate=self.format[0],
                                   language=language_of(transcribe) or default_language,
                                   prompt=prompt_of(transcribe))
        self._finals: list[str] = []
        self._language: str | None = None
        self._sent = ""  # the transcript-chunks sent, joined
        self._bad: ProtocolError | None = None  # bad input: the command ends at the next event
        self._lost = False  # an utterance's words were lost: its `error` ends the command
        self._replies: list[str] = []

    def greeting(self, hello: Hello) -> list[str]:
        return [event_text(TranscriptStart(language=self.params.language))]

    def control(self, text: str) -> ClientMessage | None:
        if self._bad is not None:
            return End()
        event = json_object(text)
        kind, data = event["type"], event["data"]
        if kind == "audio-chunk":
            return AudioIn(self._audio(data, event["payload"]))
        if kind == "audio-stop":
            return End()
        if kind == "describe":
            self._replies = [json.dumps({"type": "info", "data": self.info})]
        elif kind == "ping":
            self._replies = [event_text(Pong(text=data.get("text")))]
        elif kind in ("transcribe", "audio-start"):
            raise self._refuse(f"{kind} inside a command: send audio-stop first")
        return None

    def _audio(self, data: dict[str, Any], payload: str) -> bytes:
        chunk = tuple(data.get(n) for n in ("rate", "width", "channels"))
        if chunk != self.format:
            raise self._refuse(f"audio-chunk of rate/width/channels {chunk} in a command that "
                               f"audio-start opened with {self.format}")
        return base64.b64decode(payload)  # the transport's own encoding (command_frame)

    def _refuse(self, message: str) -> ProtocolError:
        """Bad input: its `error` goes out now, and the command and the connection end at
        the client's next event."""
        self._bad = ProtocolError(message)
        return self._bad

    def replies(self) -> list[str]:
        replies, self._replies = self._replies, []
        return replies

    def render(self, message: ServerMessage) -> list[str]:
        if (self._bad is not None or self._lost) and not isinstance(message, Error):
            return []  # the command is over for the client
        if isinstance(message, Error) and message.utterance is not None:
            if self._lost:
                return []
            self._lost = True  # no transcript follows: it would miss those words
        if isinstance(message, Partial) and message.committed:
            return self._chunk(" ".join([*self._finals, message.committed]))
        if isinstance(message, Final):
            self._finals.append(message.text)
            self._language = message.language or self._language
            return self._chunk(" ".join(self._finals))
        if isinstance(message, Error):
            return [event_text(ErrorEvent(text=message.message, code=message.code))]
        return []

    def _chunk(self, text: str) -> list[str]:
        """The words of `text` not yet sent as a transcript-chunk (words sent are never
        taken back: where `text` spells them differently, only its words after them)."""
        if text.startswith(self._sent):
            added = text[len(self._sent):]
        else:
            words = text.split()
            new = words[splice(self._sent.split(), words)[0]:]
            added = (" " if self._sent and new else "") + " ".join(new)
        if not added:
            return []
        self._sent += added
        return [event_text(TranscriptChunk(text=added))]

    def farewell(self, code: int, error: RtasrError | None,
                 duration_s: float) -> tuple[list[str], int, str]:
        if self._bad is not None:  # its error went out when it came
            return [], CLOSE_POLICY, self._bad.code
        if error is not None:
            return [error_text(error)], code, error.code
        if self._lost:  # its error went out when the words were lost
            return [], code, ""
        language = self._language or self.params.language
        return [event_text(TranscriptStop()),
                event_text(Transcript(text=" ".join(self._finals), language=language))], code, ""
