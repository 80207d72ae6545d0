"""Values a client controls, refused cleanly: every dialect's bad value is its own error shape
(an `error` event, HTTP 400), never an exception out of the dialect (which closes with 1011)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rtasr.core.protocol import Reconfigure, SpeechStart, StreamParams
from rtasr.dialects.deepgram import DeepgramDialect
from rtasr.dialects.openai_realtime import OpenAIRealtimeDialect
from rtasr.errors import ParameterError

from .test_deepgram_dialect import final as dg_final
from .test_deepgram_dialect import rendered as dg_rendered


def update(dialect: OpenAIRealtimeDialect, session: Any) -> tuple[Any, list[dict[str, Any]]]:
    """A `session.update`: what control() returns and the replies it queued."""
    out = dialect.control(json.dumps({"type": "session.update", "event_id": "e1",
                                      "session": session}))
    return out, [json.loads(t) for t in dialect.replies()]


def audio_in(**fields: Any) -> dict[str, Any]:
    return {"type": "transcription", "audio": {"input": fields}}


BAD_UPDATES = [
    (audio_in(format={"type": "audio/pcm", "rate": 1}), "session.audio.input.format.rate"),
    (audio_in(format={"type": "audio/pcm", "rate": 96_000}),
     "session.audio.input.format.rate"),
    (audio_in(format={"type": "audio/pcm", "rate": "fast"}),
     "session.audio.input.format.rate"),
    (audio_in(format={"type": "audio/pcm", "rate": True}), "session.audio.input.format.rate"),
    (audio_in(format={"type": "audio/mp3"}), "session.audio.input.format.type"),
    (audio_in(format="pcm16"), "session.audio.input.format"),
    ({"type": "transcription", "audio": "x"}, "session.audio"),
    ({"type": "transcription", "audio": {"input": 3}}, "session.audio.input"),
    (audio_in(turn_detection={"type": "server_vad", "silence_duration_ms": None}),
     "session.audio.input.turn_detection.silence_duration_ms"),
    (audio_in(turn_detection={"type": "server_vad", "prefix_padding_ms": "lots"}),
     "session.audio.input.turn_detection.prefix_padding_ms"),
    (audio_in(turn_detection={"type": "server_vad", "silence_duration_ms": 1e300}),
     "session.audio.input.turn_detection.silence_duration_ms"),
    (audio_in(turn_detection={"type": "server_vad", "threshold": 7}),
     "session.audio.input.turn_detection.threshold"),
    (audio_in(turn_detection={"type": "lunar_vad"}), "session.audio.input.turn_detection.type"),
    (audio_in(turn_detection=[]), "session.audio.input.turn_detection"),
    (audio_in(transcription={"language": 7}), "session.audio.input.transcription.language"),
    (audio_in(transcription={"language": "english please"}),
     "session.audio.input.transcription.language"),
    (audio_in(transcription={"prompt": "x" * 1_000_000}),
     "session.audio.input.transcription.prompt"),
    (audio_in(transcription={"prompt": ["names"]}),
     "session.audio.input.transcription.prompt"),
    (audio_in(transcription={"model": {"name": "whisper"}}),
     "session.audio.input.transcription.model"),
    (audio_in(transcription="whisper"), "session.audio.input.transcription"),
    (audio_in(noise_reduction={"type": "far_away"}),
     "session.audio.input.noise_reduction.type"),
    ({"type": 5}, "session.type"),
]


@pytest.mark.parametrize(("session", "param"), BAD_UPDATES)
def test_a_bad_session_update_is_an_invalid_request_error(session: Any, param: str) -> None:
    """OpenAI answers a bad value with an `error` event (invalid_request_error, the param's
    path, the client's event_id) and keeps the session as it was."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    before = dialect.params
    out, replies = update(dialect, session)
    assert out is None
    assert [r["type"] for r in replies] == ["error"]
    error = replies[0]["error"]
    assert (error["type"], error["param"], error["event_id"]) == (
        "invalid_request_error", param, "e1"), error
    assert dialect.params == before


def test_a_good_session_update_is_taken() -> None:
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    out, replies = update(dialect, audio_in(
        format={"type": "audio/pcm", "rate": 16000},
        transcription={"language": "en-US", "prompt": "  Asterisk, PBX ", "model": "x"},
        turn_detection={"type": "semantic_vad", "silence_duration_ms": 800.0,
                        "prefix_padding_ms": 200}, noise_reduction={"type": "near_field"}))
    assert replies == []
    assert isinstance(out, Reconfigure)
    assert out.params == StreamParams(sample_rate=16000, language="en",
                                      prompt="Asterisk, PBX")
    assert dict(out.changes) == {"endpoint_silence_ms": 800, "preroll_ms": 200}


def test_a_bad_event_id_or_append_is_an_error_event() -> None:
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    for event in ({"type": "input_audio_buffer.append", "audio": 5},
                  {"type": "input_audio_buffer.append", "audio": "not base64!"},
                  {"type": "session.update", "session": None},
                  {"type": ["session.update"]}):
        assert dialect.control(json.dumps(event)) is None
        replies = [json.loads(t) for t in dialect.replies()]
        assert [r["error"]["type"] for r in replies] == ["invalid_request_error"]


def test_deepgram_sends_utterance_end_after_a_wordless_utterance() -> None:
    """A cough opens an utterance that ends with no words and so no final: once the session
    awaits no final (`settled`), it no longer holds back `UtteranceEnd`."""
    dg = DeepgramDialect("utterance_end_ms=1000", default_language="en")
    dg_rendered(dg, SpeechStart(utterance=0, start=0.0), dg_final(0, 0.0, 1.5))
    dg_rendered(dg, SpeechStart(utterance=1, start=1.8))  # the cough
    assert dg.on_audio(b"", 2.2) == []  # still open: no UtteranceEnd mid-speech
    dg.settled(None)  # its decode found no words; nothing is being spoken
    end = [json.loads(t) for t in dg.on_audio(b"", 2.6)]
    assert [(e["type"], e["last_word_end"]) for e in end] == [("UtteranceEnd", 1.5)]


def test_deepgram_still_holds_utterance_end_while_speech_is_open() -> None:
    dg = DeepgramDialect("utterance_end_ms=1000", default_language="en")
    dg_rendered(dg, SpeechStart(utterance=0, start=0.0), dg_final(0, 0.0, 1.5))
    dg_rendered(dg, SpeechStart(utterance=1, start=1.8))
    dg.settled(1)  # utterance 1 is still being spoken
    assert dg.on_audio(b"", 3.0) == []


@pytest.mark.parametrize("query", [
    "sample_rate=1", "sample_rate=9" * 30, "channels=two", "utterance_end_ms=1e9",
    "endpointing=maybe", "interim_results=perhaps", "language=english%20please",
    "encoding=opus", "punctuate=2"])
def test_deepgram_bad_query_values_are_parameter_errors(query: str) -> None:
    with pytest.raises(ParameterError):
        DeepgramDialect(query, default_language="en")


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "1", "0", "TRUE", "False"])
def test_the_same_true_false_words_in_every_dialect(word: str) -> None:
    expected = word.lower() in ("on", "yes", "1", "true")
    native = StreamParams.from_query(f"interim_results={word}")
    deepgram = DeepgramDialect(f"interim_results={word}", default_language="en")
    assert native.interim_results == deepgram.params.interim_results == expected


@pytest.mark.parametrize(("tag", "expected"), [("en-US", "en"), ("EN", "en"), ("pt_BR", "pt"),
                                               ("zh-Hant-TW", "zh")])
def test_the_same_language_tags_in_every_dialect(tag: str, expected: str) -> None:
    native = StreamParams.from_query(f"language={tag}")
    deepgram = DeepgramDialect(f"language={tag}", default_language=None)
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language=None)
    out, _ = update(dialect, audio_in(transcription={"language": tag}))
    assert isinstance(out, Reconfigure)
    assert native.language == deepgram.params.language == out.params.language == expected


def test_api_keys_have_one_parse() -> None:
    """`--api-key` flags and `RTASR_API_KEYS` (cli.py and ray_app.py read both)."""
    from rtasr.core.limits import api_keys

    assert api_keys(["a", " b "], " b, c,,") == ("a", "b", "c")
    assert api_keys((), "") == ()


def test_a_refused_key_is_answered_in_each_dialects_shape() -> None:
    from rtasr.core.protocol import Dialect

    assert Dialect.unauthorized("no").body == {"error": "unauthorized", "message": "no"}
    deepgram = DeepgramDialect.unauthorized("no")
    assert (deepgram.status, deepgram.body["err_code"]) == (401, "INVALID_AUTH")
    openai = OpenAIRealtimeDialect.unauthorized("no")
    assert openai.body["error"]["code"] == "invalid_api_key"
