"""Deepgram's live-streaming protocol (`/v1/listen`) as a dialect over the session core.

Clients written for Deepgram (its SDKs, voice-agent frameworks, telephony bridges) switch to
rtasr by changing their base URL. This module only translates: query parameters to
`StreamParams`, `KeepAlive`/`Finalize`/`CloseStream` to the session's keep-alive/flush/end,
and the session's messages to Deepgram's `Results`, `SpeechStarted`, `UtteranceEnd`,
`Metadata` and `Error`. What is honoured and what is only accepted is in docs/deepgram.md.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..core import limits
from ..core.protocol import (
    ClientMessage,
    Dialect,
    Encoding,
    End,
    Error,
    Final,
    Flush,
    Hello,
    Partial,
    Refusal,
    ServerMessage,
    SpeechStart,
    StreamParams,
    WireWord,
    json_object,
)
from ..errors import AudioFormatError, ParameterError, ProtocolError, RtasrError

DEEPGRAM_PATH = "/v1/listen"
ENCODINGS: dict[str, Encoding] = {"linear16": "pcm_s16le", "mulaw": "mulaw", "alaw": "alaw"}
_CHANNEL = [0, 1]  # channel_index / channel: [this channel, channel count]


_ERR_CODES = {400: "Bad Request", 401: "INVALID_AUTH", 404: "Not Found",
              411: "Length Required", 413: "PAYLOAD_TOO_LARGE", 429: "TOO_MANY_REQUESTS",
              500: "INTERNAL_SERVER_ERROR"}  # Deepgram's


def rest_error_body(status: int, message: str, request_id: str | None = None
                    ) -> dict[str, Any]:
    """Deepgram's HTTP error body: `{"err_code", "err_msg", "request_id"}`."""
    return {"err_code": _ERR_CODES.get(status, "Bad Request" if status < 500 else
                                       "INTERNAL_SERVER_ERROR"),
            "err_msg": message, "request_id": request_id or str(uuid.uuid4())}


def flag_option(values: dict[str, str], name: str, default: bool) -> bool:
    return limits.flag(values.get(name), name, default)


def int_option(values: dict[str, str], name: str, default: int | None, low: int,
               high: int) -> int | None:
    text = values.get(name)
    return default if text is None else limits.integer(text, name, low, high)


def _terms(lists: dict[str, list[str]]) -> str | None:
    """`keyterm` and `keywords` (`word:boost`, the boost dropped, words to suppress left out) as
    one decoder prompt: the terms in order, each once, comma-separated; refused past the
    prompt's bound."""
    terms: list[str] = list(lists.get("keyterm", []))
    for keyword in lists.get("keywords", []):
        word, colon, boost = keyword.rpartition(":")
        if not (colon and _is_number(boost)):
            terms.append(keyword)
        elif float(boost) >= 0:  # a negative boost asks to suppress: prompting would not
            terms.append(word)
    unique = list(dict.fromkeys(t.strip() for t in terms if t.strip()))
    prompt = ", ".join(unique)
    if len(prompt) > limits.MAX_PROMPT_CHARS:
        raise ParameterError(f"keyterm and keywords must total at most {limits.MAX_PROMPT_CHARS} "
                             f"characters (they become the decoder's prompt), not {len(prompt)}")
    return prompt or None


def _endpointing(text: str | None) -> tuple[bool, int | None]:
    """`endpointing`: false or 0 (no `speech_final`), true (the server's pause) or the pause
    in ms (1..10000)."""
    if text is None or not text.strip():
        return True, None
    if text.strip().lower() in limits.TRUE_WORDS | limits.FALSE_WORDS - {"1"}:
        return limits.flag(text, "endpointing", True), None
    return True, limits.integer(text, "endpointing", 1, 10_000)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Options:
    """What Deepgram's query asks, the same for the live and the prerecorded endpoint."""

    values: dict[str, str]  # each parameter's last value
    language: str | None  # None: Whisper detects it
    detect: bool  # language=multi or detect_language=true: say which language was heard
    punctuate: bool  # punctuate or smart_format: the transcript as spoken, punctuated
    prompt: str | None  # keyterm and keywords
    diarize: bool  # diarize=true or diarize_model=...: a speaker on every word

    @classmethod
    def parse(cls, query: str, default_language: str | None) -> Options:
        lists = limits.query_lists(query)
        values = {k: v[-1] for k, v in lists.items()}
        # multi (streaming) and detect_language (prerecorded): Whisper detects each utterance's
        # language; the finals then say which, as Deepgram's do
        multi = values.get("language", "").strip().lower() == "multi"
        language = None if multi else limits.language(values.get("language"))
        language = language or default_language
        detect = multi or flag_option(values, "detect_language", False)
        punctuate = (flag_option(values, "punctuate", False)
                     or flag_option(values, "smart_format", False))
        # diarize_model (latest, v1, ...) names Deepgram's diarizer and turns it on: rtasr has one
        diarize = (flag_option(values, "diarize", False)
                   or bool(limits.text(values.get("diarize_model"), "diarize_model").strip()))
        return cls(values, None if detect else language, detect, punctuate, _terms(lists),
                   diarize)


def plain(word: str) -> str:
    """Deepgram's `word`: lower case, no punctuation."""
    return "".join(c for c in word.lower() if c.isalnum() or c in "'-")


def words_json(words: list[WireWord], language: str | None) -> list[dict[str, Any]]:
    """Deepgram's words; with diarize on, each word's own `speaker` and
    `speaker_confidence` (a word whose voice could not be embedded has neither)."""
    out: list[dict[str, Any]] = []
    for w in words:
        word: dict[str, Any] = {"word": plain(w.word), "start": w.start, "end": w.end,
                                "confidence": w.probability, "punctuated_word": w.word}
        if language:
            word["language"] = language
        if w.speaker is not None:
            word["speaker"] = w.speaker
            if w.speaker_confidence is not None:
                word["speaker_confidence"] = w.speaker_confidence
        out.append(word)
    return out


def transcript(text: str, punctuate: bool) -> str:
    return text if punctuate else " ".join(filter(None, map(plain, text.split())))


def confidence(words: list[dict[str, Any]]) -> float:
    """The mean of the words' probabilities (0 without words)."""
    return round(sum(w["confidence"] for w in words) / len(words), 3) if words else 0.0


def model_uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rtasr:{name}"))


def model_info(name: str) -> dict[str, str]:
    return {"name": name, "version": f"rtasr-{__version__}", "arch": "whisper"}


def created_now() -> str:
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    return created.replace("+00:00", "Z")


class DeepgramDialect(Dialect):
    name = "deepgram"

    def __init__(self, query: str, *, default_language: str | None) -> None:
        options = Options.parse(query, default_language)
        values = options.values
        encoding = values.get("encoding", "linear16").lower()
        if encoding not in ENCODINGS:
            raise ParameterError(f"encoding {encoding[:40]!r} is not supported: use "
                                 f"{', '.join(ENCODINGS)} (raw audio, no container)",
                                 param="encoding")
        channels = int_option(values, "channels", 1, 1, 8)
        if channels != 1:
            raise ParameterError(f"channels={channels}: rtasr transcribes one channel; send mono "
                                 "audio")
        self.detect = options.detect
        self.model = limits.text(values.get("model"), "model")  # accepted; ours answers
        self.punctuate = options.punctuate
        self.vad_events = flag_option(values, "vad_events", False)
        self.utterance_end_s = (
            int_option(values, "utterance_end_ms", None, 1000, 5000) or 0) / 1000
        self.endpointing, self.endpoint_ms = _endpointing(values.get("endpointing"))
        self.params = StreamParams(
            sample_rate=limits.sample_rate_hz(values.get("sample_rate", "16000")),
            encoding=ENCODINGS[encoding], language=options.language, prompt=options.prompt,
            interim_results=flag_option(values, "interim_results", False),
            diarize=options.diarize)
        self._request_id = str(uuid.uuid4())
        self._model_name = "whisper"
        self._model_uuid = ""
        self._sha256 = hashlib.sha256()
        self._open: set[int] = set()  # utterances started whose final has not come
        self._finalizing: int | None = None  # the utterance a Finalize flushed
        self._last_word_end: float | None = None

    @classmethod
    def handshake_refusal(cls, error: ParameterError) -> Refusal | None:
        """Deepgram answers bad parameters with HTTP 400 and a `dg-error` header."""
        return Refusal(400, rest_error_body(400, str(error)), (("dg-error", str(error)),))

    @classmethod
    def unauthorized(cls, message: str) -> Refusal:
        return Refusal(401, rest_error_body(401, message), (("dg-error", message),))

    def config_changes(self, pause_ms: int) -> dict[str, int]:
        """Per-session settings this client asked for (`endpointing` in ms)."""
        if self.endpoint_ms is None:
            return {}
        endpoint = max(self.endpoint_ms, 300)  # shorter silences split words on a CPU VAD
        return {"endpoint_silence_ms": endpoint, "pause_ms": min(pause_ms, endpoint)}

    def greeting(self, hello: Hello) -> list[str]:
        self._model_name = hello.model
        self._model_uuid = model_uuid(hello.model)
        return []  # Deepgram says nothing until there are results

    def control(self, text: str) -> ClientMessage | None:
        kind = json_object(text).get("type")
        if kind == "KeepAlive":
            return None
        if kind == "Finalize":  # flushes the open utterance, if any: its final is marked
            self._finalizing = max(self._open) if self._open else None
            return Flush()
        if kind == "CloseStream":
            return End()
        shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
        raise ProtocolError(f"unknown message type {shown!r}; expected KeepAlive, Finalize "
                            "or CloseStream")

    def settled(self, open_utterance: int | None) -> list[str]:
        """No final is awaited: an utterance that ended without words (a cough) got no final,
        so only the one still being spoken holds back `UtteranceEnd`."""
        self._open &= {open_utterance}
        return []

    def on_audio(self, data: bytes, position_s: float) -> list[str]:
        self._sha256.update(data)
        end = self._last_word_end
        if (self.utterance_end_s and end is not None and not self._open
                and position_s - end >= self.utterance_end_s):
            self._last_word_end = None
            return [_json({"type": "UtteranceEnd", "channel": _CHANNEL, "last_word_end": end})]
        return []

    def render(self, message: ServerMessage) -> list[str]:
        if isinstance(message, SpeechStart):
            self._open.add(message.utterance)
            if self.vad_events and not message.continues:  # a cut is no new speech
                return [_json({"type": "SpeechStarted", "channel": _CHANNEL,
                               "timestamp": message.start})]
        elif isinstance(message, Partial):
            if self.params.interim_results:
                return [self._results(message.start, message.end, message.text, [], False,
                                      False)]
        elif isinstance(message, Final):
            return [self._final(message)]
        elif isinstance(message, Error):
            if message.utterance is not None:  # a lost utterance ends as a final would
                self._open.discard(message.utterance)
            variant = "SchemaError" if message.code == "bad_message" else message.code
            return [_json({"type": "Error", "variant": variant,
                           "description": message.message})]
        return []

    def farewell(self, code: int, error: RtasrError | None,
                 duration_s: float) -> tuple[list[str], int, str]:
        if error is not None:
            reason = "DATA-0000" if isinstance(error, AudioFormatError) else error.code
            return [_json({"type": "Error", "variant": error.code,
                           "description": str(error)})], code, reason
        return [self._metadata(duration_s)], code, ""

    # ------------------------------------------------------------------------------------

    def _final(self, message: Final) -> str:
        # finals come in utterance order: this one ends every utterance up to its own
        self._open = {u for u in self._open if u > message.utterance}
        self._last_word_end = message.words[-1].end if message.words else message.end
        flushed = self._finalizing == message.utterance
        if self._finalizing is not None and self._finalizing <= message.utterance:
            self._finalizing = None  # also when the flushed utterance had no words
        language = message.language if self.detect else None
        words = words_json(message.words, language)
        return self._results(message.start, message.end, message.text, words, True,
                             message.endpoint and self.endpointing, flushed, language)

    def _results(self, start: float, end: float, text: str, words: list[dict[str, Any]],
                 is_final: bool, speech_final: bool, from_finalize: bool = False,
                 language: str | None = None) -> str:
        result: dict[str, Any] = {
            "type": "Results",
            "channel_index": _CHANNEL,
            "duration": round(end - start, 3),
            "start": start,
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {"alternatives": [{"transcript": transcript(text, self.punctuate),
                                          "confidence": confidence(words),
                                          "words": words}]},
            "metadata": {"request_id": self._request_id,
                         "model_info": model_info(self._model_name),
                         "model_uuid": self._model_uuid},
        }
        if from_finalize:
            result["from_finalize"] = True
        if language:  # detected: Deepgram's `multi` and `detect_language` fields
            result["channel"]["alternatives"][0]["languages"] = [language]
            result["channel"]["detected_language"] = language
        return _json(result)

    def _metadata(self, duration_s: float) -> str:
        return _json({
            "type": "Metadata", "transaction_key": "deprecated",
            "request_id": self._request_id, "sha256": self._sha256.hexdigest(),
            "created": created_now(), "duration": duration_s, "channels": 1,
            "models": [self._model_uuid],
            "model_info": {self._model_uuid: model_info(self._model_name)},
        })
