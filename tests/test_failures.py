"""No failure loses a word silently: a bug in a session's decode handling, a decode that
failed, a shutdown that cut a stream short, each is seen (logged, reported to the client)
and costs that session, or that utterance, only. Real server, real model, real speech."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest, Priority
from rtasr.core.protocol import Error
from rtasr.core.session import Session
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, encode, exchange, silence, stream, wav


def speech(name: str, pause_s: float = 1.0) -> np.ndarray:
    return np.concatenate([silence(0.3, 16000), clip_at(name, 16000), silence(pause_s, 16000)])


@pytest.fixture(scope="module")
async def srv(engine: Engine) -> AsyncIterator[Server]:
    async with Server(Config(host="127.0.0.1", port=0, max_speed=10.0, wyoming_port=0),
                      engine) as server:
        yield server


async def test_a_bug_in_decode_handling_costs_its_session_only(
        srv: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """`on_result` runs in a task nobody awaits: a bug there is logged once with the session
    id and its traceback, closes that session with 1011 and a message, and a session beside
    it gets its words."""
    on_result = Session.on_result
    doomed: set[str] = set()

    def buggy(self: Session, *args: Any, **kwargs: Any) -> Any:
        if self.id in doomed:
            raise ZeroDivisionError("injected bug")
        return on_result(self, *args, **kwargs)

    monkeypatch.setattr(Session, "on_result", buggy)
    pcm = encode(speech("tt-weasels"))
    messages: list[dict[str, Any]] = []
    with caplog.at_level(logging.INFO):
        other = asyncio.create_task(stream(srv.url, speech("agent-alreadyon"), speed=2.0))
        async with asyncio.timeout(30), connect(srv.url) as ws:
            doomed.add(json.loads(await ws.recv())["session_id"])
            with contextlib.suppress(ConnectionClosed):  # the bug may close it mid-send
                for i in range(0, len(pcm), 32000):
                    await ws.send(pcm[i : i + 32000])
                    await asyncio.sleep(0.05)
            with contextlib.suppress(ConnectionClosed):  # what came before the close
                while True:
                    messages.append(json.loads(await ws.recv()))
        result = await other
    (session,) = doomed
    assert ws.close_code == 1011, (ws.close_code, messages)
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == "internal_error"
    bugs = [r for r in caplog.records if r.exc_info and getattr(r, "session", None) == session]
    assert len(bugs) == 1, [r.getMessage() for r in caplog.records if r.exc_info]
    assert bugs[0].exc_info is not None and bugs[0].exc_info[0] is ZeroDivisionError
    assert "never retrieved" not in caplog.text
    assert wer(TRANSCRIPTS["agent-alreadyon"], result.text) <= 0.1
    assert result.close_code == 1000


# A decode made to fail reaches the client as its dialect's error for that utterance, and
# the session goes on to the next one. -------------------------------------------------

FIRST, SECOND = "vm-nobodyavail", "tt-weasels"


def two_turns(rate: int = 16000) -> np.ndarray:
    return np.concatenate([silence(0.5, rate), clip_at(FIRST, rate), silence(1.6, rate),
                           clip_at(SECOND, rate), silence(1.6, rate)])


@pytest.fixture
def first_final_fails(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine fails every final-priority decode (the model raised) until one utterance
    is lost: a speculative final that fails is only decoded again."""
    transcribe, on_failure = engine.transcribe, Session.on_failure
    armed = [True]

    async def faulty(request: DecodeRequest) -> Any:
        if request.priority is Priority.FINAL and armed[0]:
            raise RuntimeError("injected fault")
        return await transcribe(request)

    def lost(self: Session, *args: Any) -> Any:
        actions = on_failure(self, *args)
        if any(isinstance(a, Error) for a in actions):
            armed[0] = False
        return actions

    monkeypatch.setattr(engine, "transcribe", faulty)
    monkeypatch.setattr(Session, "on_failure", lost)


@pytest.mark.usefixtures("first_final_fails")
async def test_native_error_names_the_utterance(srv: Server) -> None:
    pcm = encode(two_turns())
    messages, code = await exchange(f"{srv.url}?interim_results=false",
                                    *(pcm[i : i + 32000] for i in range(0, len(pcm), 32000)),
                                    json.dumps({"type": "end"}))
    errors = [m for m in messages if m["type"] == "error"]
    assert [(e["code"], e["utterance"]) for e in errors] == [("engine_error", 0)], errors
    finals = [m for m in messages if m["type"] == "final"]
    assert code == 1000 and finals and all(f["utterance"] > 0 for f in finals)
    assert wer(TRANSCRIPTS[SECOND], " ".join(f["text"] for f in finals)) <= 0.2


@pytest.mark.usefixtures("first_final_fails")
async def test_deepgram_live_error_then_the_next_utterance(srv: Server) -> None:
    from .test_deepgram import of, transcript
    from .test_deepgram import stream as dg_stream

    messages = await asyncio.to_thread(dg_stream, srv.port, encode(two_turns()),
                                       encoding="linear16", interim_results="false",
                                       utterance_end_ms="1000")
    (error,) = of(messages, "Error")
    assert error.variant == "engine_error" and "utterance 0" in error.description
    later = messages[messages.index(error):]
    assert wer(TRANSCRIPTS[SECOND], transcript(of(later, "Results"))) <= 0.2
    assert of(later, "UtteranceEnd"), "no UtteranceEnd after the lost utterance"


@pytest.mark.usefixtures("first_final_fails")
async def test_openai_realtime_item_failed_then_the_next_completed(srv: Server) -> None:
    import base64

    from openai import AsyncOpenAI

    from .test_openai_realtime import session

    rate = 24_000
    client = AsyncOpenAI(api_key="k", base_url=f"http://127.0.0.1:{srv.port}/v1",
                         max_retries=0)
    events: list[Any] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"},
                                       max_retries=0) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(session=session({"type": "server_vad"}))  # type: ignore[arg-type]
        assert (await conn.recv()).type == "session.updated"
        pcm = encode(two_turns(rate))
        for i in range(0, len(pcm), rate // 5):
            await conn.input_audio_buffer.append(audio=base64.b64encode(
                pcm[i : i + rate // 5]).decode())
            await asyncio.sleep(0.03)
        async with asyncio.timeout(30):
            async for event in conn:  # until the second turn's item completes
                events.append(event)
                if event.type == "conversation.item.input_audio_transcription.completed":
                    break
    kinds = [e.type for e in events]
    failed = [e for e in events
              if e.type == "conversation.item.input_audio_transcription.failed"]
    assert len(failed) == 1, kinds
    assert failed[0].error.code == "engine_error" and failed[0].error.type == "server_error"
    lost = [e.type for e in events if getattr(e, "item_id", None) == failed[0].item_id]
    assert lost[-2:] == ["input_audio_buffer.committed",
                         "conversation.item.input_audio_transcription.failed"], lost
    assert kinds.count("conversation.item.input_audio_transcription.completed") == 1, kinds
    assert wer(TRANSCRIPTS[SECOND], events[-1].transcript) <= 0.2
    assert "error" not in kinds


@pytest.mark.usefixtures("first_final_fails")
async def test_openai_rest_a_lost_utterance_is_a_500_not_a_shorter_text(srv: Server) -> None:
    import openai


    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="k",
                                max_retries=0)
    with pytest.raises(openai.InternalServerError) as failed:
        await client.audio.transcriptions.create(model="whisper-1",
                                                 file=("a.wav", wav(two_turns()), "audio/wav"))
    assert "utterance 0" in str(failed.value)


@pytest.mark.usefixtures("first_final_fails")
async def test_openai_rest_stream_ends_with_an_error_event(srv: Server) -> None:
    import openai


    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="k",
                                max_retries=0)
    stream = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav(two_turns()), "audio/wav"), stream=True)
    with pytest.raises(openai.APIError, match="utterance 0"):
        async for event in stream:
            assert event.type != "transcript.text.done"


@pytest.mark.usefixtures("first_final_fails")
async def test_deepgram_prerecorded_a_lost_utterance_is_a_500(srv: Server) -> None:
    from deepgram.core.api_error import ApiError

    from .test_deepgram_rest import client

    with pytest.raises(ApiError) as failed:
        await client(srv).listen.v1.media.transcribe_file(  # no retry: it would succeed
            request=wav(two_turns()), request_options={"max_retries": 0})
    assert failed.value.status_code == 500 and "utterance 0" in str(failed.value.body)


@pytest.mark.usefixtures("first_final_fails")
async def test_wyoming_error_then_the_next_command(srv: Server) -> None:
    """Home Assistant's Wyoming client: the command whose words were lost gets an `error`
    event (never a transcript with words missing), and the next command on the same
    connection is transcribed."""
    from wyoming.asr import Transcript
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error as WyomingError

    from .test_wyoming import read_until_transcript, send_command, spoken

    assert srv.wyoming is not None
    async with AsyncTcpClient("127.0.0.1", srv.wyoming.port) as client:
        await send_command(client, spoken(FIRST))
        lost = await read_until_transcript(client)
        await send_command(client, spoken(SECOND))
        async with asyncio.timeout(60):  # the rest of the lost command, then the next one
            while (event := await client.read_event()) is not None:
                if Transcript.is_type(event.type):
                    break
    assert WyomingError.is_type(lost[-1].type), [e.type for e in lost]
    assert WyomingError.from_event(lost[-1]).code == "engine_error"
    assert not any(Transcript.is_type(e.type) for e in lost)
    assert event is not None
    assert wer(TRANSCRIPTS[SECOND], Transcript.from_event(event).text) <= 0.2
