"""LiveKit Agents' own STT plugins, unchanged, pointed at a real rtasr on loopback.

`livekit-plugins-openai`'s `openai.STT(use_realtime=True)` speaks OpenAI's realtime
transcription (`/v1/realtime?intent=transcription`), `livekit-plugins-deepgram`'s
`deepgram.STT` Deepgram's live API (`/v1/listen`). Each runs through the plugin's own stream
API as an agent would drive it: `rtc.AudioFrame`s in, `SpeechEvent`s out. No LiveKit room or
server is involved: outside a job, a plugin only needs an aiohttp session, which
`utils.http_context.open()` binds (as LiveKit's docs say for tests and scripts).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import (
    TRANSCRIPTS,
    TWO_READERS,
    assert_close_to_yardstick,
    clip_at,
    conversation,
    encode,
    reader_of,
    silence,
    trimmed,
)

pytest.importorskip("livekit.plugins.openai")
import aiohttp
from livekit import rtc
from livekit.agents import stt as lkstt
from livekit.agents import utils
from livekit.plugins import deepgram, openai

pytestmark = pytest.mark.e2e
SPEED = 4.0  # x real time; rtasr's --max-speed is 10
Kind = lkstt.SpeechEventType


@pytest.fixture
async def http() -> AsyncIterator[None]:
    """What a LiveKit job gives a plugin: a process-wide aiohttp session."""
    async with utils.http_context.open():
        yield


def frames(audio: np.ndarray, rate: int, frame_s: float = 0.1) -> list[rtc.AudioFrame]:
    pcm = encode(audio)
    step = int(rate * frame_s) * 2
    return [rtc.AudioFrame(pcm[i : i + step], rate, 1, len(pcm[i : i + step]) // 2)
            for i in range(0, len(pcm), step)]


class Listener:
    """Reads a stream's events in the background; `until(cond)` waits for a condition on
    everything read so far (woken by each new event, never by a timer)."""

    def __init__(self, stream: lkstt.SpeechStream) -> None:
        self.events: list[lkstt.SpeechEvent] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: lkstt.SpeechStream) -> None:
        async for event in stream:
            self.events.append(event)
            self._changed.set()

    async def until(self, cond: Callable[[list[lkstt.SpeechEvent]], bool],
                    timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s):
            while not cond(self.events):
                assert not self._task.done(), "the stream ended early"
                self._changed.clear()
                await self._changed.wait()

    def kinds(self) -> list[Kind]:
        return [e.type for e in self.events]

    def finals(self) -> list[str]:
        return [e.alternatives[0].text for e in self.events if e.type == Kind.FINAL_TRANSCRIPT]

    async def done(self) -> None:
        await self._task  # the stream's iterator ends once it is closed


async def push(stream: lkstt.SpeechStream, audio: np.ndarray, rate: int) -> None:
    for frame in frames(audio, rate):
        stream.push_frame(frame)
        await asyncio.sleep(frame.duration / SPEED)


def errors_of(plugin: Any) -> list[Any]:
    errors: list[Any] = []
    plugin.on("error", errors.append)
    return errors


async def test_openai_realtime_plugin(server: Server, http: None) -> None:
    """Interim transcripts (from the deltas) come before the turn's final; the final's words
    match; closing the stream is clean."""
    name = "conf-onlyperson"
    rate = openai.stt.SAMPLE_RATE
    plugin = openai.STT(api_key="any", base_url=f"http://127.0.0.1:{server.port}/v1",
                        model="whisper-1", language="en", use_realtime=True)
    errors = errors_of(plugin)
    stream = plugin.stream()
    events = Listener(stream)
    await push(stream, np.concatenate([silence(0.5, rate), clip_at(name, rate),
                                       silence(1.5, rate)]), rate)

    def settled(events: list[lkstt.SpeechEvent]) -> bool:  # every turn ended and reported
        kinds = [e.type for e in events]
        ends = kinds.count(Kind.END_OF_SPEECH)
        return ends > 0 and kinds.count(Kind.START_OF_SPEECH) == ends == kinds.count(
            Kind.RECOGNITION_USAGE)

    await events.until(settled)
    await stream.aclose()
    await events.done()
    await plugin.aclose()
    kinds = events.kinds()
    text = " ".join(events.finals())
    assert_close_to_yardstick(server.engine, text, [name])
    assert kinds[0] == Kind.START_OF_SPEECH
    assert Kind.INTERIM_TRANSCRIPT in kinds
    assert kinds.index(Kind.INTERIM_TRANSCRIPT) < kinds.index(Kind.FINAL_TRANSCRIPT)
    assert errors == []


class Recording(aiohttp.ClientWebSocketResponse):
    """aiohttp's own websocket, keeping each text message it hands the plugin: the wire as
    the plugin reads it (passed in through aiohttp's `ws_response_class`)."""

    received: list[dict[str, Any]]

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        msg = await super().receive(timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            self.received.append(json.loads(msg.data))
        return msg


@pytest.fixture
async def wire() -> AsyncIterator[tuple[aiohttp.ClientSession, list[dict[str, Any]]]]:
    """An aiohttp session for the plugin's `http_session=`, and what its sockets received."""
    received: list[dict[str, Any]] = []
    recording = type("Recording", (Recording,), {"received": received})
    async with aiohttp.ClientSession(ws_response_class=recording) as session:
        yield session, received


def dg_plugin(server: Server, session: aiohttp.ClientSession | None = None) -> deepgram.STT:
    return deepgram.STT(api_key="any", base_url=f"http://127.0.0.1:{server.port}/v1/listen",
                        http_session=session)


def turns_settled(events: list[lkstt.SpeechEvent], turns: int) -> bool:
    """At least `turns` utterances started, each ended, none with its final still to come."""
    kinds = [e.type for e in events]
    ends = kinds.count(Kind.END_OF_SPEECH)
    return (ends >= turns and kinds.count(Kind.START_OF_SPEECH) == ends
            and kinds[::-1].index(Kind.END_OF_SPEECH) < kinds[::-1].index(Kind.FINAL_TRANSCRIPT))


async def test_deepgram_plugin(server: Server, http: None) -> None:
    """Two clips with a pause after each: interim results before each final, the words of
    both, END_OF_SPEECH at each pause (speech_final), and a clean close."""
    names = ["tt-weasels", "conf-noempty"]
    rate = 16000
    plugin = dg_plugin(server)
    errors = errors_of(plugin)
    stream = plugin.stream()
    events = Listener(stream)
    for name in names:
        await push(stream, np.concatenate([silence(0.3, rate), clip_at(name, rate),
                                           silence(1.2, rate)]), rate)
    await events.until(lambda ev: turns_settled(ev, len(names)))
    stream.end_input()
    await stream.aclose()
    await events.done()
    await plugin.aclose()
    kinds = events.kinds()
    text = " ".join(events.finals())
    assert_close_to_yardstick(server.engine, text, names)
    assert kinds.index(Kind.INTERIM_TRANSCRIPT) < kinds.index(Kind.FINAL_TRANSCRIPT)
    assert kinds.index(Kind.START_OF_SPEECH) < kinds.index(Kind.INTERIM_TRANSCRIPT)
    assert errors == []


async def test_deepgram_plugin_flush_sends_finalize(
        server: Server, wire: tuple[aiohttp.ClientSession, list[dict[str, Any]]]) -> None:
    """`stream.flush()` (the plugin sends Finalize) right after the last word, with no pause
    the server could end the utterance on: the final comes back marked `from_finalize`, and
    the stream goes on to transcribe the next utterance the same way."""
    session, received = wire
    names = ["something-terribly-wrong", "demo-echodone"]
    rate = 16000
    plugin = dg_plugin(server, session)
    errors = errors_of(plugin)
    stream = plugin.stream()
    events = Listener(stream)
    for turn, name in enumerate(names, 1):
        await push(stream, np.concatenate([silence(0.3, rate), trimmed(name, rate)]), rate)
        stream.flush()
        await events.until(lambda ev, n=turn: len([e for e in ev
                                                   if e.type == Kind.FINAL_TRANSCRIPT]) == n)
    await stream.aclose()
    await events.done()
    await plugin.aclose()
    finals = events.finals()
    for name, text in zip(names, finals, strict=True):
        assert_close_to_yardstick(server.engine, text, [name])
    on_wire = [m for m in received if m["type"] == "Results" and m["is_final"]]
    assert [m["channel"]["alternatives"][0]["transcript"] for m in on_wire] == finals
    assert all(m.get("from_finalize") is True for m in on_wire), on_wire
    assert errors == []


async def test_deepgram_plugin_with_diarization(diarizing: Server, http: None) -> None:
    """`enable_diarization=True` (the plugin sends diarize=true): each final's `speaker_id`,
    which the plugin takes from its words' `speaker`, is one per reader and differs between
    the two readers (Allison Smith in English, June Wallack in French, taking turns twice)."""
    turns = TWO_READERS
    audio, spans = conversation(turns, [0.8, 1.0])
    plugin = deepgram.STT(api_key="any", base_url=f"http://127.0.0.1:{diarizing.port}/v1/listen",
                          language="multi", enable_diarization=True)
    errors = errors_of(plugin)
    stream = plugin.stream()
    events = Listener(stream)
    await push(stream, audio, 16000)
    await events.until(lambda ev: turns_settled(ev, len(turns)), timeout_s=60)
    stream.end_input()
    await stream.aclose()
    await events.done()
    await plugin.aclose()
    finals = [e.alternatives[0] for e in events.events if e.type == Kind.FINAL_TRANSCRIPT]
    labels: dict[str | None, set[str | None]] = {}
    for final in finals:
        labels.setdefault(reader_of(spans, final.start_time, final.end_time), set()).add(
            final.speaker_id)
    assert set(labels) == {"allison", "june"}, labels
    assert all(len(s) == 1 for s in labels.values()) and labels["allison"] != labels["june"]
    assert labels["allison"] | labels["june"] == {"S0", "S1"}
    english = " ".join(f.text for f in finals
                       if reader_of(spans, f.start_time, f.end_time) == "allison")
    assert wer(f"{TRANSCRIPTS['agent-pass']} {TRANSCRIPTS['vm-nobodyavail']}", english) <= 0.2
    assert errors == []
