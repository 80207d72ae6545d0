"""Home Assistant's Wyoming protocol: the `wyoming` package's own async TCP client, unchanged,
against `rtasr serve --wyoming-port`.

The client sends `transcribe`, `audio-start`, `audio-chunk`s and `audio-stop` and parses every
event the server sends with the package's own classes, as Home Assistant's Wyoming integration
does. The model is the real bundled one, the audio real recorded commands. Bad input is written
raw, byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong

from rtasr.config import Config
from rtasr.dialects.wyoming import WyomingLink, audio_format, parse_header, prompt_of
from rtasr.engine import Engine
from rtasr.errors import FrameTooLargeError, ParameterError, ProtocolError
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, encode, silence, until

pytestmark = pytest.mark.e2e
COMMANDS = ["vm-nobodyavail", "tt-weasels", "agent-pass", "vm-rec-name"]


@pytest.fixture(scope="module")
async def server(engine: Engine) -> AsyncIterator[Server]:
    config = Config(host="127.0.0.1", port=0, wyoming_port=0, max_sessions=4)
    async with Server(config, engine) as srv:
        yield srv


def port_of(server: Server) -> int:
    assert server.wyoming is not None
    return server.wyoming.port


def spoken(name: str, rate: int = 16000, pause_s: float = 0.7) -> bytes:
    """A recorded command as Home Assistant streams it: a little silence, the words, then
    silence until its own VAD ends the command (0.7 s at its default sensitivity)."""
    return encode(np.concatenate([silence(0.3, rate), clip_at(name, rate),
                                  silence(pause_s, rate)]))


async def send_command(client: AsyncTcpClient, pcm: bytes, *, rate: int = 16000,
                       speed: float = 4.0, language: str | None = "en") -> None:
    """One command, its audio in 100 ms chunks at `speed` x real time."""
    await client.write_event(Transcribe(language=language).event())
    await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
    step = rate // 10 * 2
    for offset in range(0, len(pcm), step):
        chunk = AudioChunk(rate=rate, width=2, channels=1, audio=pcm[offset:offset + step])
        await client.write_event(chunk.event())
        await asyncio.sleep(0.1 / speed)
    await client.write_event(AudioStop().event())


async def read_until_transcript(client: AsyncTcpClient) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(60):
        while (event := await client.read_event()) is not None:
            events.append(event)
            if Transcript.is_type(event.type) or Error.is_type(event.type):
                break
    return events


async def command(port: int, name: str, **kwargs: Any) -> list[Event]:
    """One command on its own connection, read only once audio-stop is sent (as Home
    Assistant does)."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await send_command(client, spoken(name, kwargs.get("rate", 16000)), **kwargs)
        return await read_until_transcript(client)


def transcript(events: list[Event]) -> Transcript:
    assert events and Transcript.is_type(events[-1].type), [e.type for e in events]
    return Transcript.from_event(events[-1])


def assert_heard(events: list[Event], name: str, limit: float = 0.2) -> None:
    text = transcript(events).text
    assert wer(TRANSCRIPTS[name], text) <= limit, (name, text)


# the protocol's events, one by one ------------------------------------------------------------


async def test_describe_gives_one_asr_program(server: Server) -> None:
    async with AsyncTcpClient("127.0.0.1", port_of(server)) as client:
        await client.write_event(Describe().event())
        async with asyncio.timeout(10):
            info = Info.from_event(await client.read_event())  # type: ignore[arg-type]
        await client.write_event(Ping(text="hi").event())
        async with asyncio.timeout(10):
            assert Pong.from_event(await client.read_event()).text == "hi"  # type: ignore[arg-type]
    (program,) = info.asr
    assert program.name == "rtasr" and program.installed and program.version
    assert program.supports_transcript_streaming
    assert program.requires_external_vad  # a command ends with the client's audio-stop
    (model,) = program.models
    assert model.name == "tiny.en" and model.languages == ["en"] and model.installed
    assert model.attribution.name == "OpenAI"
    assert not (info.tts or info.wake or info.handle or info.intent)


@pytest.mark.parametrize("name", COMMANDS)
async def test_a_command_read_after_audio_stop(server: Server, name: str) -> None:
    """Streaming off, as a client that reads nothing until `transcript`: the words."""
    events = await command(port_of(server), name)
    assert_heard(events, name)
    assert transcript(events).language == "en"


async def test_streamed_words_come_while_speaking(server: Server) -> None:
    """Streaming on: transcript-start, chunks while the audio is still coming, transcript-stop,
    then the transcript; the chunks add up to its text."""
    name = "agent-alreadyon"
    events: list[Event] = []
    sent_stop = asyncio.Event()
    before_stop: list[str] = []
    async with AsyncTcpClient("127.0.0.1", port_of(server)) as client:

        async def read() -> None:
            async with asyncio.timeout(60):
                while (event := await client.read_event()) is not None:
                    events.append(event)
                    if not sent_stop.is_set():
                        before_stop.append(event.type)
                    if Transcript.is_type(event.type):
                        return

        reader = asyncio.create_task(read())
        await send_command(client, spoken(name), speed=1.5)
        sent_stop.set()
        await reader
    kinds = [e.type for e in events]
    assert kinds[0] == "transcript-start" and kinds[-2:] == ["transcript-stop", "transcript"]
    assert "transcript-chunk" in before_stop, kinds
    chunks = "".join(TranscriptChunk.from_event(e).text for e in events
                     if TranscriptChunk.is_type(e.type))
    assert chunks == transcript(events).text
    assert_heard(events, name)


async def test_one_connection_many_commands(server: Server) -> None:
    """A satellite keeps its connection: command after command, each its own words, at the
    rate it records at (8 kHz here), with a describe between two."""
    async with AsyncTcpClient("127.0.0.1", port_of(server)) as client:
        for i, name in enumerate(COMMANDS[:3]):
            await send_command(client, spoken(name, 8000), rate=8000)
            assert_heard(await read_until_transcript(client), name)
            if i == 0:
                await client.write_event(Describe().event())
                async with asyncio.timeout(10):
                    event = await client.read_event()
                assert event is not None and Info.is_type(event.type)


async def test_a_command_without_speech_is_empty(server: Server) -> None:
    async with AsyncTcpClient("127.0.0.1", port_of(server)) as client:
        await send_command(client, encode(silence(1.0, 16000)), speed=10)
        events = await read_until_transcript(client)
    assert transcript(events).text == ""
    assert [e.type for e in events] == ["transcript-start", "transcript-stop", "transcript"]


# bad input ------------------------------------------------------------------------------------


def header(kind: str, data: dict[str, Any] | None = None, payload: bytes = b"",
           payload_length: int | None = None) -> bytes:
    body = json.dumps(data or {}).encode()
    line = {"type": kind, "version": "1.10.0", "data_length": len(body),
            "payload_length": len(payload) if payload_length is None else payload_length}
    return json.dumps(line).encode() + b"\n" + body + payload


START = header("audio-start", {"rate": 16000, "width": 2, "channels": 1})
CHUNK = header("audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, bytes(3200))


async def raw(port: int, *writes: bytes) -> tuple[list[dict[str, Any]], bool]:
    """Write `writes`, then read what the server sends until it closes: the events (data
    merged) and whether it closed within 10 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    events: list[dict[str, Any]] = []
    try:
        for data in writes:
            writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            while line := await reader.readline():
                event = json.loads(line)
                if event.get("data_length"):
                    event["data"] = json.loads(await reader.readexactly(event["data_length"]))
                events.append(event)
        return events, True
    except TimeoutError:
        return events, False
    finally:
        writer.close()


BAD = {
    "chunk before audio-start": ([CHUNK], "bad_message"),
    "stop before audio-start": ([header("audio-stop")], "bad_message"),
    "absurd rate": ([header("audio-start", {"rate": 10**9, "width": 2, "channels": 1}), CHUNK],
                    "bad_parameter"),
    "rate not a number": ([header("audio-start", {"rate": "fast", "width": 2, "channels": 1})],
                          "bad_parameter"),
    "32-bit samples": ([header("audio-start", {"rate": 16000, "width": 4, "channels": 1})],
                       "bad_parameter"),
    "stereo": ([header("audio-start", {"rate": 16000, "width": 2, "channels": 2})],
               "bad_parameter"),
    "a language the model lacks": ([header("transcribe", {"language": "de"}), START],
                                   "bad_parameter"),
    "audio-start twice": ([START, CHUNK, START, CHUNK], "bad_message"),
    "a chunk in another format": (
        [START, header("audio-chunk", {"rate": 8000, "width": 2, "channels": 1}, bytes(1600)),
         CHUNK], "bad_message"),
    "half a sample": ([START, header("audio-chunk", {"rate": 16000, "width": 2, "channels": 1},
                                     bytes(1601))], "bad_audio"),
    # 400 bytes past the announced payload: they begin the next header line
    "payload larger than announced": ([START, CHUNK + bytes(400) + header("audio-stop")],
                                      "bad_message"),
    "payload over the frame limit": ([START, header("audio-chunk", {"rate": 16000},
                                                    payload_length=1 << 30)], "frame_too_large"),
    "a header that is not JSON": ([b"hello there\n"], "bad_message"),
    "a header line without end": ([b"{" + b" " * (1 << 17)], "frame_too_large"),
}


def counted(server: Server, code: str) -> float:
    """Errors reported with `code`, and sessions refused for it (rtasr_errors_total,
    rtasr_rejected_connections_total)."""
    registry = server.metrics.registry
    return sum(registry.get_sample_value(name, {label: code}) or 0.0
               for name, label in (("rtasr_errors_total", "code"),
                                   ("rtasr_rejected_connections_total", "reason")))


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_input_costs_only_its_connection(server: Server, case: str) -> None:
    writes, code = BAD[case]
    before = counted(server, code)
    events, closed = await raw(port_of(server), *writes)
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[0]["data"]["code"] == code, events
    assert errors[0]["data"]["text"]
    assert closed, f"{case}: the connection stayed open"
    assert not any(e["type"] == "transcript" for e in events)
    assert counted(server, code) > before
    await until(lambda: server.session_count == 0)
    assert_heard(await command(port_of(server), "transfer", speed=10), "transfer")


async def test_unknown_events_are_dropped(server: Server) -> None:
    """The protocol's rule: a server drops events it does not know (`select-program`, a
    newer client's events), between commands and inside one."""
    async with AsyncTcpClient("127.0.0.1", port_of(server)) as client:
        await client.write_event(Event(type="select-program", data={"name": "rtasr"}))
        await client.write_event(Transcribe(language="en-US").event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        await client.write_event(Event(type="something-new", data={"x": 1}))
        pcm = spoken("demo-echodone")
        await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm).event())
        await client.write_event(AudioStop().event())
        assert_heard(await read_until_transcript(client), "demo-echodone")


async def test_refused_when_full(engine: Engine) -> None:
    """Admission as for websocket sessions: past --max-sessions, `error` `overloaded`."""
    config = Config(host="127.0.0.1", port=0, wyoming_port=0, max_sessions=1)
    async with Server(config, engine) as srv, \
            AsyncTcpClient("127.0.0.1", port_of(srv)) as first:
        await first.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        await until(lambda: srv.session_count == 1)
        events, closed = await raw(port_of(srv), START)
        assert closed and events[-1]["type"] == "error"
        assert events[-1]["data"]["code"] == "overloaded"


async def test_shutdown_delivers_the_command_and_closes_idle_links(engine: Engine) -> None:
    config = Config(host="127.0.0.1", port=0, wyoming_port=0)
    srv = Server(config, engine)
    await srv.start()
    async with AsyncTcpClient("127.0.0.1", port_of(srv)) as idle, \
            AsyncTcpClient("127.0.0.1", port_of(srv)) as talking:
        await talking.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        pcm = spoken("tt-weasels")
        await talking.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm).event())
        await until(lambda: srv.session_count == 1)
        await srv.stop()
        assert_heard(await read_until_transcript(talking), "tt-weasels")
        async with asyncio.timeout(5):
            assert await idle.read_event() is None


# the dialect without a socket ---------------------------------------------------------------


def test_framing_limits() -> None:
    assert parse_header(b'{"type":"ping","data":{"text":"x"}}', 100).data == {"text": "x"}
    with pytest.raises(FrameTooLargeError):
        parse_header(b'{"type":"audio-chunk","payload_length":101}', 100)
    for bad in (b'[]', b'{"data":{}}', b'{"type":"x","data_length":-1}',
                b'{"type":"x","payload_length":"9"}', b'{"type":"x","data":[1]}'):
        with pytest.raises(ProtocolError):
            parse_header(bad, 100)


def test_opening_checks() -> None:
    assert audio_format({"rate": 22050, "width": 2, "channels": 1}) == (22050, 2, 1)
    for data in ({"rate": 7999, "width": 2, "channels": 1}, {"rate": 16000.5, "width": 2,
                 "channels": 1}, {"rate": True, "width": 2, "channels": 1}, {}):
        with pytest.raises(ParameterError):
            audio_format(data)
    assert prompt_of({"transcript_names": ["Kitchen Light", "Kitchen Light"],
                      "transcript_terms": ["thermostat", 3]}) == "Kitchen Light, thermostat"
    assert len(prompt_of({"transcript_names": ["x" * 300, "y" * 300]}) or "") == 300


def test_link_order() -> None:
    from rtasr.core.engine_api import ModelInfo

    link = WyomingLink(ModelInfo(name="tiny.en", multilingual=False, language="en",
                                 languages=("en",)))
    assert link.take("audio-chunk", {}).error is not None
    assert link.take("transcribe", {"language": "en"}).command is None
    opening = link.take("audio-start", {"rate": 16000, "width": 2, "channels": 1}).command
    assert opening is not None and json.loads(opening)["transcribe"] == {"language": "en"}
    assert link.take("select-program", {"name": "rtasr"}) == link.take("nonsense", {})


def test_chunks_add_up_to_the_transcript() -> None:
    """Committed words stream once each, finals add the rest; `transcript` joins the finals."""
    from rtasr.core.protocol import Final, Partial
    from rtasr.dialects.wyoming import WyomingDialect

    opening = {"transcribe": {"language": "en-GB"}, "info": {},
               "audio_start": {"rate": 16000, "width": 2, "channels": 1}}
    dialect = WyomingDialect(json.dumps(opening), default_language=None)
    assert dialect.params.language == "en"
    said = [Partial(utterance=0, start=0, end=1, text="Turn on the", committed="Turn on"),
            Partial(utterance=0, start=0, end=2, text="Turn on the light", committed="Turn on"),
            Final(utterance=0, start=0, end=2, text="Turn on the light."),
            Partial(utterance=1, start=3, end=4, text="and the fan", committed="and"),
            Final(utterance=1, start=3, end=4, text="and the fan.")]
    out = [json.loads(t) for message in said for t in dialect.render(message)]
    chunks = [e["data"]["text"] for e in out]
    assert chunks == ["Turn on", " the light.", " and", " the fan."]
    stop, last = (json.loads(t) for t in dialect.farewell(1000, None, 4.0)[0])
    assert stop["type"] == "transcript-stop"
    assert last == {"type": "transcript", "data": {"text": "".join(chunks), "language": "en"}}
