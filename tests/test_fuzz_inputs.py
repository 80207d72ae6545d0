"""Property-based fuzzing (hypothesis) of every value a client controls: any JSON value in any
field of any dialect's control messages, query strings and REST forms gives either a valid
configuration within core/limits.py's bounds or a ProtocolError/ParameterError, nothing else."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from rtasr.core import limits
from rtasr.core.protocol import StreamParams, parse_client_message
from rtasr.dialects.deepgram import DeepgramDialect
from rtasr.dialects.openai_realtime import OpenAIRealtimeDialect
from rtasr.dialects.openai_settings import MANUAL_SILENCE_MS, MAX_SILENCE_MS, PREROLL_MS_MAX
from rtasr.errors import ParameterError, ProtocolError
from rtasr.server.rest.deepgram_prerecorded import parse as deepgram_rest_parse
from rtasr.server.rest.openai_audio import parse_form

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
GOOD_TEXT = ["", "en", "en-US", "fr", "true", "false", "0", "1", "16000", "8000", "48000",
             "500", "linear16", "mulaw", "alaw", "pcm_f32le", "translate", "multi", "json",
             "word", "segment", "0.5", "-3", "1e9", "nan", "x" * 600, "é", "99999999999999999999"]
TEXT = st.sampled_from(GOOD_TEXT) | st.text(max_size=30)


def json_or(*good: Any) -> st.SearchStrategy[Any]:
    """A field's value: one rtasr takes, or any JSON value."""
    return st.sampled_from(good) | JSON


def check_params(params: StreamParams) -> None:
    """What every accepted configuration holds (what the resampler and decoder rely on)."""
    assert limits.MIN_SAMPLE_RATE_HZ <= params.sample_rate <= limits.MAX_SAMPLE_RATE_HZ
    assert params.prompt is None or len(params.prompt) <= limits.MAX_PROMPT_CHARS
    assert params.language is None or 2 <= len(params.language) <= 3


def query(names: list[str]) -> st.SearchStrategy[str]:
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=10), TEXT,
                           max_size=6).map(urlencode)


@given(query(sorted(StreamParams.KNOWN)))
def test_native_query(text: str) -> None:
    with contextlib.suppress(ParameterError):
        check_params(StreamParams.from_query(text, default_language="en"))


@given(JSON | st.fixed_dictionaries({"type": json_or("flush", "end", "keepalive")}, optional={
    "extra": JSON}))
def test_native_control_messages(message: Any) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_message(json.dumps(message))


DEEPGRAM = ["encoding", "sample_rate", "channels", "language", "detect_language", "punctuate",
            "smart_format", "interim_results", "vad_events", "utterance_end_ms", "endpointing",
            "keyterm", "keywords", "model", "utterances", "multichannel", "callback"]


@given(query(DEEPGRAM))
def test_deepgram_live_query(text: str) -> None:
    try:
        dialect = DeepgramDialect(text, default_language="en")
    except ParameterError:
        return
    check_params(dialect.params)
    assert len(dialect.model) <= limits.MAX_NAME_CHARS


@given(JSON | st.fixed_dictionaries({"type": json_or("KeepAlive", "Finalize", "CloseStream")}))
def test_deepgram_control_messages(message: Any) -> None:
    dialect = DeepgramDialect("", default_language="en")
    with contextlib.suppress(ProtocolError):
        dialect.control(json.dumps(message))


@given(query(DEEPGRAM))
def test_deepgram_prerecorded_query(text: str) -> None:
    try:
        request = deepgram_rest_parse(text, "en")
    except ParameterError:
        return
    assert request.raw is None or (
        limits.MIN_SAMPLE_RATE_HZ <= request.raw.sample_rate_hz <= limits.MAX_SAMPLE_RATE_HZ)
    assert request.options.prompt is None or len(request.options.prompt) <= 500


FORM = ["model", "language", "prompt", "response_format", "temperature", "stream",
        "timestamp_granularities[]"]


@given(st.dictionaries(st.sampled_from(FORM) | st.text(max_size=10), st.lists(TEXT, min_size=1,
                                                                              max_size=3)),
       st.sampled_from(["transcribe", "translate"]))
def test_openai_rest_form(fields: dict[str, list[str]], task: str) -> None:
    try:
        request = parse_form(fields, task, "en")
    except ParameterError:
        return
    check_params(request.params)
    assert request.granularity <= {"word", "segment"}


SESSION = st.fixed_dictionaries({}, optional={
    "type": json_or("transcription", "realtime"),
    "audio": JSON | st.fixed_dictionaries({}, optional={"input": JSON | st.fixed_dictionaries(
        {}, optional={
            "format": JSON | st.fixed_dictionaries({}, optional={
                "type": json_or("audio/pcm", "audio/pcmu", "audio/pcma"),
                "rate": json_or(24000, 16000, 8000, 1, 96000, "fast", 16000.0)}),
            "transcription": JSON | st.fixed_dictionaries({}, optional={
                "model": json_or("gpt-4o-transcribe"), "language": json_or("en", "en-US", ""),
                "prompt": json_or("", "Asterisk", "x" * 600)}),
            "turn_detection": JSON | st.fixed_dictionaries({}, optional={
                "type": json_or("server_vad", "semantic_vad"),
                "threshold": json_or(0.5, 2),
                "silence_duration_ms": json_or(500, 0, 200, 10_001, None),
                "prefix_padding_ms": json_or(300, -1, "lots")}),
            "noise_reduction": json_or(None, {"type": "near_field"})})})})


@settings(max_examples=300)
@given(st.lists(st.fixed_dictionaries({"type": st.just("session.update"), "session": SESSION})
                | st.fixed_dictionaries({"type": json_or(
                    "input_audio_buffer.append", "input_audio_buffer.commit",
                    "input_audio_buffer.clear")}, optional={"audio": json_or("AAAA", "!"),
                                                            "event_id": JSON}),
                min_size=1, max_size=4))
def test_openai_realtime_events(events: list[dict[str, Any]]) -> None:
    """control() never raises: a bad event is an `error` event and the session goes on;
    every update it takes is within the bounds."""
    dialect = OpenAIRealtimeDialect("intent=transcription", default_language="en")
    for data in events:
        change = dialect.control(json.dumps(data))
        replies = [json.loads(t) for t in dialect.replies()]
        if change is not None and hasattr(change, "params"):
            check_params(change.params)
            silence, preroll = (value for _, value in change.changes)
            assert 300 <= silence <= MAX_SILENCE_MS or silence == MANUAL_SILENCE_MS
            assert 0 <= preroll <= PREROLL_MS_MAX
            dialect.reconfigured(change)
        assert all(r["type"] != "error" or r["error"]["type"] == "invalid_request_error"
                   for r in replies)
