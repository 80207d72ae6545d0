"""OpenAI's realtime transcription protocol (`/v1/realtime?intent=transcription`, the GA shape
of the official `openai` SDK's `types/realtime`) as a dialect over the session core.

Audio comes base64 in `input_audio_buffer.append`; `commit` is a flush, `clear` a flush whose
words are dropped, `session.update` retunes the session at any time (format, language,
prompt, turn detection: what follows it uses them; a change between server VAD and manual
turns first ends the open turn under the old one). This module reads
the client's events and routes the session's messages to the turn detection each utterance
opened under (openai_turns.py: server VAD or manual commits); openai_settings.py checks and
holds the session's settings. A bad event or value is answered with an `error` event
(`invalid_request_error`, its `param` the field's path) and the session goes on. What is
honoured and what is only accepted is in docs/openai.md.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import Any

from ..core import limits
from ..core.protocol import (
    AudioIn,
    ClientMessage,
    Dialect,
    Error,
    Final,
    Flush,
    Hello,
    Partial,
    Reconfigure,
    Refusal,
    ServerMessage,
    SpeechEnd,
    SpeechStart,
    json_object,
)
from ..errors import (
    AudioFormatError,
    ClientValueError,
    ParameterError,
    ProtocolError,
    RtasrError,
)
from . import openai_settings
from .openai_turns import Chain, ManualTurns, Turns, VadTurns, event, new_id

REALTIME_PATH = "/v1/realtime"
CLIENT_CODES = frozenset({ProtocolError.code, ParameterError.code, AudioFormatError.code})


def error_event(code: str, message: str, *, kind: str = "invalid_request_error",
                event_id: str | None = None, param: str | None = None) -> str:
    """OpenAI's `error` event (its `error` object: type, code, message, param, event_id)."""
    return event("error", error={"type": kind, "code": code, "message": message,
                                 "param": param, "event_id": event_id})


def rest_error_body(status: int, message: str, *, code: str | None = None,
                    param: str | None = None) -> dict[str, Any]:
    """OpenAI's HTTP error body: `{"error": {message, type, param, code}}`."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _turns(chain: Chain, manual: bool) -> Turns:
    return ManualTurns(chain) if manual else VadTurns(chain)


class OpenAIRealtimeDialect(Dialect):
    name = "openai-realtime"

    def __init__(self, query: str, *, default_language: str | None) -> None:
        values = limits.query_values(query)
        intent = limits.text(values.get("intent", "transcription"), "intent")
        if intent != "transcription":
            raise ParameterError(f"intent={intent[:40]!r}: rtasr serves transcription sessions "
                                 "only (?intent=transcription)", param="intent")
        model = limits.text(values.get("model"), "model")  # accepted; the server's answers
        if limits.flag(values.get("diarize"), "diarize", False):  # docs/diarization.md
            raise ParameterError("diarize=true: OpenAI's realtime API has no speaker field; ask "
                                 "for speakers on /ws?diarize=true or Deepgram's "
                                 "/v1/listen?diarize=true", param="diarize")
        self.settings = openai_settings.initial(default_language, model)
        self.params = self.settings.params
        self._default_language = default_language
        self._pending = self.settings  # an update's settings, until it is taken
        self._session_id = new_id("sess")
        self._replies: list[str] = []
        self._latest = -1  # the highest utterance the session spoke of
        self._dropped = -1  # utterances up to this one were cleared
        self._lost: set[int] = set()  # utterances whose item failed: their final is not sent
        self._chain = Chain()
        # (first utterance, turns): the turn detection each utterance opened under
        self._modes: list[tuple[int, Turns]] = [(0, _turns(self._chain, False))]

    @classmethod
    def handshake_refusal(cls, error: ParameterError) -> Refusal | None:
        return Refusal(400, rest_error_body(400, str(error), code=error.reason,
                                            param=error.param))

    @classmethod
    def unauthorized(cls, message: str) -> Refusal:
        return Refusal(401, rest_error_body(401, message, code="invalid_api_key"))

    def greeting(self, hello: Hello) -> list[str]:
        if not self.settings.model:
            self.settings = self._pending = replace(self.settings, model=hello.model)
        return [event("session.created", session=self.settings.view(self._session_id))]

    @property
    def _turns_now(self) -> Turns:
        return self._modes[-1][1]

    def _turns_at(self, utterance: int) -> Turns:
        """The turn detection `utterance` opened under."""
        return next(turns for first, turns in reversed(self._modes) if first <= utterance)

    # client messages --------------------------------------------------------------------

    def control(self, text: str) -> ClientMessage | None:
        try:
            data = json_object(text)
        except ProtocolError as exc:
            self._replies.append(error_event("invalid_json", str(exc)))
            return None
        kind = data.get("type")
        event_id = data.get("event_id")
        if not (isinstance(event_id, str) and len(event_id) <= limits.MAX_NAME_CHARS):
            event_id = None
        try:
            if kind == "input_audio_buffer.append":
                return self._append(data)
            if kind == "input_audio_buffer.commit":
                if isinstance(self._turns_now, ManualTurns):
                    self._replies += self._turns_now.commit()
                return Flush()
            if kind == "input_audio_buffer.clear":
                self._clear()
                return Flush()
            if kind == "session.update":
                return self._update(data.get("session"))
        except ClientValueError as exc:
            self._replies.append(error_event(exc.reason, str(exc), event_id=event_id,
                                             param=exc.param))
            return None
        shown = kind if isinstance(kind, str) and len(kind) <= 60 else "?"
        self._replies.append(error_event(
            "unknown_event", f"event type {shown!r} is not supported on a transcription "
            "session", event_id=event_id, param="type"))
        return None

    def replies(self) -> list[str]:
        replies, self._replies = self._replies, []
        return replies

    def _append(self, data: dict[str, Any]) -> AudioIn | None:
        audio = data.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError("input_audio_buffer.append needs 'audio': base64 text",
                                param="audio", reason="invalid_type")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("input_audio_buffer.append: 'audio' is not base64",
                                param="audio") from None
        return AudioIn(pcm) if pcm else None

    def _clear(self) -> None:
        """Drop the open turn: the flush ends it, and what it said is never sent."""
        self._dropped = self._latest
        for _, turns in self._modes:
            if isinstance(turns, ManualTurns):
                turns.open = None
        self._replies.append(event("input_audio_buffer.cleared"))

    def _update(self, session: Any) -> Reconfigure:
        """A `session.update`, checked whole (openai_settings.py); taken in `reconfigured`
        once the server accepted it (the model knows the language)."""
        self._pending = openai_settings.updated(self.settings, session, self._default_language)
        switch = self._pending.manual != self.settings.manual  # the open turn ends first
        return Reconfigure(self._pending.params, self._pending.changes(), flush=switch)

    def reconfigured(self, change: Reconfigure) -> list[str]:
        """Acknowledge; a switch of turn detection applies from the next utterance (the
        connection flushes the open one), and a manual turn being collected is committed."""
        out = []
        if change.flush:
            if isinstance(self._turns_now, ManualTurns):
                out += self._turns_now.commit_open()
            self._modes.append((self._latest + 1, _turns(self._chain, self._pending.manual)))
        self.settings = self._pending
        self.params = change.params
        return [*out, event("session.updated", session=self.settings.view(self._session_id))]

    # session messages -------------------------------------------------------------------

    def render(self, message: ServerMessage) -> list[str]:
        if isinstance(message, Error):
            if message.utterance is not None:
                return self._failed(message.utterance, message)
            kind = "invalid_request_error" if message.code in CLIENT_CODES else "server_error"
            return [error_event(message.code, message.message, kind=kind)]
        if not isinstance(message, SpeechStart | SpeechEnd | Partial | Final):
            return []
        if isinstance(message, Final) and message.utterance in self._lost:
            self._lost.discard(message.utterance)  # the words settled before the failure
            return []
        self._latest = max(self._latest, message.utterance)
        turns = self._turns_at(message.utterance)
        if message.utterance <= self._dropped and not (
                isinstance(message, Final) and turns.spared(message.utterance)):
            return []  # cleared, but what was committed before the clear stays
        if isinstance(message, Partial):
            return turns.partial(message)
        if isinstance(message, SpeechStart):
            return turns.speech_start(message)
        if isinstance(message, SpeechEnd):
            return turns.speech_end(message)
        while len(self._modes) > 1 and self._modes[1][0] <= message.utterance:
            self._modes.pop(0)  # finals come in order: no earlier utterance speaks again
        return turns.final(message)

    def _failed(self, utterance: int, error: Error) -> list[str]:
        """An utterance that could not be transcribed: its item is committed, as any turn,
        then `failed` instead of `completed` (the final that follows, with the words settled
        before the failure, is not sent)."""
        self._latest = max(self._latest, utterance)
        self._lost.add(utterance)
        turns = self._turns_at(utterance)
        if utterance <= self._dropped and not turns.spared(utterance):
            return []  # cleared by the client
        return turns.failed(utterance, error)

    def settled(self, open_utterance: int | None = None) -> list[str]:
        """No final is awaited: complete the commits no final will answer (no words in
        them), and stop the speech of utterances that ended without words."""
        out: list[str] = []
        for _, turns in self._modes:
            out += turns.settled(open_utterance)
        return out

    def farewell(self, code: int, error: RtasrError | None,
                 duration_s: float) -> tuple[list[str], int, str]:
        if error is None:
            return [], code, ""
        kind = "invalid_request_error" if isinstance(error, AudioFormatError | ParameterError) \
            else "server_error"
        return [error_event(error.code, str(error), kind=kind)], code, error.code
