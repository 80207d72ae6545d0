"""OpenAI's realtime transcription protocol (`/v1/realtime?intent=transcription`, the GA shape
of the official `openai` SDK's `types/realtime`) as a dialect over the session core.

Audio comes base64 in `input_audio_buffer.append`; `commit` is a flush, `clear` a flush whose
words are dropped, `session.update` retunes the session at any time (format, language,
prompt, turn detection: what follows it uses them; a change between server VAD and manual
turns first ends the open turn under the old one). The session's messages become `speech_started` /
`speech_stopped`, `committed`, `conversation.item.input_audio_transcription.delta` (the
partials' committed prefix: a delta is never taken back) and `.completed`. With
`turn_detection: null` only `commit` ends an item: the session's finals up to it are joined.
What is honoured and what is only accepted is in docs/openai.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs

from ..core.align import splice
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
    StreamParams,
    json_object,
)
from ..errors import AudioFormatError, ParameterError, ProtocolError, RtasrError

REALTIME_PATH = "/v1/realtime"
_FORMATS = {"audio/pcm": ("pcm_s16le", 24_000), "audio/pcmu": ("mulaw", 8_000),
            "audio/pcma": ("alaw", 8_000)}
_MIN_SILENCE_MS = 300  # shorter silences split words on a CPU VAD (as deepgram.py)
_MANUAL_SILENCE_MS = 3_600_000  # turn_detection null: no endpoint; only commit ends an item
_DEFAULT_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                "silence_duration_ms": 500}


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _event(kind: str, **fields: Any) -> str:
    data = {"type": kind, "event_id": _id("event"), **fields}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def error_event(code: str, message: str, *, kind: str = "invalid_request_error",
                event_id: str | None = None, param: str | None = None) -> str:
    """OpenAI's `error` event (its `error` object: type, code, message, param, event_id)."""
    return _event("error", error={"type": kind, "code": code, "message": message,
                                  "param": param, "event_id": event_id})


@dataclass
class _Item:
    """One user turn: an `item_id`, the utterances it spans, its text so far."""

    id: str = field(default_factory=lambda: _id("item"))
    finals: list[str] = field(default_factory=list)
    sent: str = ""  # the deltas sent so far, joined
    start_s: float | None = None
    end_s: float = 0.0
    last: int = -1  # the highest utterance it holds
    committed: bool = False  # server VAD: `committed` sent (at the pause or the cut)
    failed: bool = False  # `failed` sent: no `completed` follows

    def text(self, tail: str = "") -> str:
        return " ".join(t for t in (*self.finals, tail) if t)

    def delta(self, text: str) -> str:
        """What `text` adds to the deltas sent. Words sent are never taken back: where
        `text` spells them differently, only its words after them are new."""
        if text.startswith(self.sent):
            added = text[len(self.sent):]
        else:
            words = text.split()
            new = words[splice(self.sent.split(), words)[0]:]
            added = (" " if self.sent else "") + " ".join(new) if new else ""
        self.sent += added
        return added


class OpenAIRealtimeDialect(Dialect):
    name = "openai-realtime"

    def __init__(self, query: str, *, default_language: str | None) -> None:
        values = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        intent = values.get("intent", "transcription")
        if intent != "transcription":
            raise ParameterError(f"intent={intent[:40]!r}: rtasr serves transcription sessions "
                                 "only (?intent=transcription)")
        self.params = StreamParams(sample_rate=24_000, language=default_language)
        self._default_language = default_language
        self._model = values.get("model", "")  # accepted; the server's model answers
        self._session_id = _id("sess")
        self._format: dict[str, Any] = {"type": "audio/pcm", "rate": 24_000}
        self._vad: dict[str, Any] | None = dict(_DEFAULT_VAD)
        self._noise: Any = None
        self._pending_view: dict[str, Any] = {}
        self._replies: list[str] = []
        self._previous: str | None = None  # the last committed item's id
        self._latest = -1  # the highest utterance the session spoke of
        self._dropped = -1  # utterances up to this one were cleared
        self._lost: set[int] = set()  # utterances whose item failed: their final is not sent
        # server VAD: one item per utterance; those whose speech_started went out
        self._items: dict[int, _Item] = {}
        self._started: set[int] = set()
        # (first utterance, manual): the turn detection each utterance opened under
        self._modes: list[tuple[int, bool]] = [(0, False)]
        # manual (turn_detection null): the item collecting, the committed ones awaiting
        # their last final (the item, the utterance it ends with)
        self._open: _Item | None = None
        self._committing: list[tuple[_Item, int]] = []

    @classmethod
    def handshake_refusal(cls, error: ParameterError) -> Refusal | None:
        return Refusal(400, {"error": {"type": "invalid_request_error", "code": error.code,
                                       "message": str(error), "param": None}})

    @property
    def _manual(self) -> bool:
        return self._vad is None

    def greeting(self, hello: Hello) -> list[str]:
        self._model = self._model or hello.model
        return [_event("session.created", session=self._view())]

    def _view(self) -> dict[str, Any]:
        """The session as `session.created` / `session.updated` show it."""
        transcription = {"model": self._model, "language": self.params.language,
                         "prompt": self.params.prompt or ""}
        return {"type": "transcription", "id": self._session_id,
                "object": "realtime.transcription_session",
                "audio": {"input": {"format": self._format, "noise_reduction": self._noise,
                                    "transcription": transcription,
                                    "turn_detection": self._vad}},
                "include": None}

    # client messages --------------------------------------------------------------------

    def control(self, text: str) -> ClientMessage | None:
        data = json_object(text)
        kind, event_id = data.get("type"), data.get("event_id")
        try:
            if kind == "input_audio_buffer.append":
                return self._append(data)
            if kind == "input_audio_buffer.commit":
                return self._commit()
            if kind == "input_audio_buffer.clear":
                self._clear()
                return Flush()
            if kind == "session.update":
                return self._update(data.get("session"))
        except ProtocolError as exc:
            self._replies.append(error_event(exc.code, str(exc), event_id=event_id))
            return None
        shown = kind if isinstance(kind, str) and len(kind) <= 60 else "?"
        self._replies.append(error_event(
            "unknown_event", f"event type {shown!r} is not supported on a transcription "
            "session", event_id=event_id))
        return None

    def replies(self) -> list[str]:
        replies, self._replies = self._replies, []
        return replies

    def _append(self, data: dict[str, Any]) -> AudioIn | None:
        audio = data.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError("input_audio_buffer.append needs 'audio': base64 text")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("input_audio_buffer.append: 'audio' is not base64") from None
        return AudioIn(pcm) if pcm else None

    def _manual_at(self, utterance: int) -> bool:
        """Whether `utterance` opened with no turn detection (only commit ends its item)."""
        return next(manual for first, manual in reversed(self._modes) if first <= utterance)

    def _commit(self) -> Flush:
        if self._manual:
            self._replies.append(self._commit_open())
        return Flush()

    def _commit_open(self) -> str:
        """Commit the manual turn being collected: `committed` now, `completed` with the
        final of the last utterance it holds."""
        item, self._open = self._open or _Item(), None
        self._committing.append((item, item.last))
        return self._committed(item)

    def _clear(self) -> None:
        """Drop the open turn: the flush ends it, and what it said is never sent."""
        self._dropped = self._latest
        self._open = None
        self._replies.append(_event("input_audio_buffer.cleared"))

    def _update(self, session: Any) -> Reconfigure | None:
        if not isinstance(session, dict):
            raise ProtocolError("session.update needs a 'session' object")
        if session.get("type", "transcription") != "transcription":
            raise ProtocolError("session.type must be 'transcription': rtasr serves "
                                "transcription sessions only")
        audio_in = (session.get("audio") or {}).get("input") or {}
        params, fmt = self.params, self._format
        if audio_in.get("format"):
            fmt = dict(audio_in["format"])
            encoding, rate = _FORMATS.get(fmt.get("type", "audio/pcm"), ("", 0))
            if not encoding:
                raise ProtocolError(f"audio format {fmt.get('type')!r} is not supported: use "
                                    f"{', '.join(_FORMATS)}")
            rate = int(fmt.get("rate") or rate)
            params = replace(params, encoding=encoding, sample_rate=rate)  # type: ignore[arg-type]
        transcription = audio_in.get("transcription") or {}
        if "language" in transcription:
            language = (transcription["language"] or "").split("-")[0].lower()
            params = replace(params, language=language or self._default_language)
        if "prompt" in transcription:
            params = replace(params, prompt=(transcription["prompt"] or "").strip() or None)
        self._model = transcription.get("model") or self._model
        vad = self._vad
        if "turn_detection" in audio_in:
            vad = audio_in["turn_detection"]
            if vad is not None:
                vad = {**_DEFAULT_VAD, **vad, "type": "server_vad"}  # semantic_vad too
        self._noise = audio_in.get("noise_reduction", self._noise)
        self._pending_view = {"format": fmt, "vad": vad}
        switch = (vad is None) != self._manual  # the open turn ends under the old detection
        silence = _MANUAL_SILENCE_MS if vad is None else max(
            int(vad["silence_duration_ms"]), _MIN_SILENCE_MS)
        preroll = 300 if vad is None else min(max(int(vad["prefix_padding_ms"]), 0), 1000)
        return Reconfigure(params, (("endpoint_silence_ms", silence), ("preroll_ms", preroll)),
                           flush=switch)

    def reconfigured(self, change: Reconfigure) -> list[str]:
        """Acknowledge; a switch of turn detection applies from the next utterance (the
        connection flushes the open one), and a manual turn being collected is committed."""
        out = []
        if change.flush:
            if self._manual and self._open is not None:
                out.append(self._commit_open())
            self._modes.append((self._latest + 1, self._pending_view["vad"] is None))
        self.params = change.params
        self._format = self._pending_view["format"]
        self._vad = self._pending_view["vad"]
        return [*out, _event("session.updated", session=self._view())]

    # session messages -------------------------------------------------------------------

    def render(self, message: ServerMessage) -> list[str]:
        if isinstance(message, Error):
            if message.utterance is not None:
                return self._failed(message.utterance, message)
            return [error_event(message.code, message.message, kind="server_error")]
        if not isinstance(message, SpeechStart | SpeechEnd | Partial | Final):
            return []
        if isinstance(message, Final) and message.utterance in self._lost:
            self._lost.discard(message.utterance)  # the words settled before the failure
            return []
        self._latest = max(self._latest, message.utterance)
        if message.utterance <= self._dropped and not (
                isinstance(message, Final) and self._committed_vad(message.utterance)):
            return []  # cleared, but what was committed before the clear stays
        manual = self._manual_at(message.utterance)
        if isinstance(message, SpeechEnd):
            if manual:
                return []
            return [*self._stopped(message.utterance, message.end),
                    *self._commit_item(message.utterance)]
        if isinstance(message, Final):
            while len(self._modes) > 1 and self._modes[1][0] <= message.utterance:
                self._modes.pop(0)  # finals come in order: no earlier utterance speaks again
            return self._manual_final(message) if manual else self._vad_final(message)
        item = self._item_for(message.utterance)
        if item.start_s is None:
            item.start_s = message.start
        if isinstance(message, Partial):
            return self._delta(item, item.text(message.committed.strip()))
        if manual:
            return []
        if message.continues and message.utterance - 1 in self._started:
            # a cut in running speech (session.py opens the next before it finals the cut
            # one): the audio before it is committed, and the turn goes on into this item;
            # no stop, no new start
            self._started.discard(message.utterance - 1)
            self._started.add(message.utterance)
            return self._commit_item(message.utterance - 1)
        self._started.add(message.utterance)
        return [_event("input_audio_buffer.speech_started",
                       audio_start_ms=round(message.start * 1000), item_id=item.id)]

    def _failed(self, utterance: int, error: Error) -> list[str]:
        """An utterance that could not be transcribed: its item is committed, as any turn,
        then `failed` instead of `completed` (the final that follows, with the words settled
        before the failure, is not sent)."""
        self._latest = max(self._latest, utterance)
        self._lost.add(utterance)
        if utterance <= self._dropped and not self._committed_vad(utterance):
            return []  # cleared by the client
        out: list[str] = []
        if self._manual_at(utterance):
            item = self._item_for(utterance)
        else:
            item = self._items.pop(utterance, _Item())
            out += self._stopped(utterance, item.end_s, item)
            if not item.committed:
                item.committed = True
                out.append(self._committed(item))
        if item.failed:
            return out
        item.failed = True
        return [*out, _event("conversation.item.input_audio_transcription.failed",
                             item_id=item.id, content_index=0,
                             error={"type": "server_error", "code": error.code,
                                    "message": error.message, "param": None})]

    def _item_for(self, utterance: int) -> _Item:
        """The item an utterance's words belong to."""
        if not self._manual_at(utterance):
            item = self._items.setdefault(utterance, _Item())
        else:
            item = next((i for i, upto in self._committing if utterance <= upto), None) \
                or self._open or _Item()
            if not self._committing or utterance > self._committing[-1][1]:
                self._open = item
        item.last = max(item.last, utterance)
        return item

    def _committed_vad(self, utterance: int) -> bool:
        item = self._items.get(utterance)
        return item is not None and item.committed

    def _commit_item(self, utterance: int) -> list[str]:
        """`committed` for the utterance's item, now: at its pause or its cut, before its
        final (OpenAI commits at speech_stopped and completes when the text is ready)."""
        item = self._item_for(utterance)
        if item.committed:
            return []
        item.committed = True
        return [self._committed(item)]

    def _vad_final(self, message: Final) -> list[str]:
        item = self._items.pop(message.utterance, None) or _Item(start_s=message.start)
        item.finals.append(message.text.strip())
        item.end_s = message.end
        out = self._stopped(message.utterance, message.end, item)  # a flush or the end
        if not item.committed:
            item.committed = True
            out.append(self._committed(item))
        return out + self._delta(item, item.text()) + self._completed(item)

    def _stopped(self, utterance: int, end: float, item: _Item | None = None) -> list[str]:
        """`speech_stopped` for the turn `utterance` ends, if it is still open: at the pause
        (SpeechEnd), or with the final where no pause ended it."""
        if utterance not in self._started:
            return []
        self._started.discard(utterance)
        item = item or self._item_for(utterance)
        item.end_s = end
        return [_event("input_audio_buffer.speech_stopped", audio_end_ms=round(end * 1000),
                       item_id=item.id)]

    def _manual_final(self, message: Final) -> list[str]:
        out: list[str] = []
        while self._committing and self._committing[0][1] < message.utterance:
            out += self._completed(self._committing.pop(0)[0])  # that one had no words
        item = self._item_for(message.utterance)
        if item.start_s is None:
            item.start_s = message.start
        item.finals.append(message.text.strip())
        item.end_s = message.end
        out += self._delta(item, item.text())
        if self._committing and self._committing[0][1] <= message.utterance:
            out += self._completed(self._committing.pop(0)[0])
        return out

    def settled(self, open_utterance: int | None = None) -> list[str]:
        """No final is awaited: complete the commits no final will answer (no words in
        them), and stop the speech of utterances that ended without words."""
        out: list[str] = []
        for item, _ in self._committing:
            out += self._completed(item)
        self._committing.clear()
        for utterance, item in sorted(self._items.items()):
            if item.committed:  # server VAD: committed at its pause or cut; no words came
                del self._items[utterance]
                out += self._completed(item)
        for utterance in sorted(self._started - {open_utterance}):
            item = self._items.pop(utterance, _Item())
            self._started.discard(utterance)
            out.append(_event("input_audio_buffer.speech_stopped",
                              audio_end_ms=round(item.end_s * 1000), item_id=item.id))
        return out

    def _committed(self, item: _Item) -> str:
        previous, self._previous = self._previous, item.id
        return _event("input_audio_buffer.committed", item_id=item.id,
                      previous_item_id=previous)

    def _delta(self, item: _Item, text: str) -> list[str]:
        """The delta event for what `text` adds to the item's deltas, if anything."""
        delta = item.delta(text)
        return [_event("conversation.item.input_audio_transcription.delta", item_id=item.id,
                       content_index=0, delta=delta)] if delta else []

    def _completed(self, item: _Item) -> list[str]:
        if item.failed:
            return []
        seconds = round(max(item.end_s - (item.start_s or 0.0), 0.0), 3)
        return [_event("conversation.item.input_audio_transcription.completed",
                       item_id=item.id, content_index=0, transcript=item.sent,
                       usage={"type": "duration", "seconds": seconds})]

    def farewell(self, code: int, error: RtasrError | None,
                 duration_s: float) -> tuple[list[str], int, str]:
        if error is None:
            return [], code, ""
        kind = "invalid_request_error" if isinstance(error, AudioFormatError | ParameterError) \
            else "server_error"
        return [error_event(error.code, str(error), kind=kind)], code, error.code
