"""The file path shared by the REST APIs (rtasr.server.rest.uploads): a failed decode fails
the request (never a 200 with words missing), an upload yields to live sessions on every
chunk, and it ends when its client hangs up or the server stops."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest, Priority, Transcript
from rtasr.core.protocol import StreamParams
from rtasr.engine import Engine
from rtasr.errors import EngineError
from rtasr.server import Server
from rtasr.server.rest.uploads import FileTranscriber, RequestError

from .helpers import encode, silence, trimmed, wav


class FailingFirstFinals:
    """The real engine, but the first `n` final-priority decodes fail (the model raised)."""

    def __init__(self, engine: Engine, n: int) -> None:
        self.engine, self.left = engine, n

    async def transcribe(self, request: DecodeRequest) -> Transcript | None:
        if request.priority is Priority.FINAL and self.left > 0:
            self.left -= 1
            raise EngineError("the model failed on this request")
        return await self.engine.transcribe(request)

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)


async def test_a_failed_decode_fails_the_request_not_a_transcript_with_words_missing(
        engine: Engine) -> None:
    files = FileTranscriber(Config().served_with(engine.config), FailingFirstFinals(engine, 1),
                            engine.info)
    pcm = encode(np.concatenate([silence(0.5, 16000), trimmed("agent-alreadyon"),
                                 silence(1.5, 16000), trimmed("vm-nobodyavail"),
                                 silence(1.0, 16000)]))
    finals = []
    with pytest.raises(RequestError) as failed:
        async for final in files.finals(pcm, StreamParams(language="en",
                                                           interim_results=False)):
            finals.append(final)
    assert failed.value.status == 500 and "utterance 0" in str(failed.value), failed.value
    assert finals == []  # nothing after the lost utterance either


async def test_an_hour_of_silence_yields_to_the_loop_on_every_second(engine: Engine) -> None:
    """Silence asks for no decode, so nothing made the feed loop await: ten minutes of it
    ran as one synchronous burst while every live session waited."""
    files = FileTranscriber(Config().served_with(engine.config), engine, engine.info)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    beside = asyncio.create_task(ticker())
    seconds = 600
    finals = [f async for f in files.finals(bytes(seconds * 32000),
                                            StreamParams(language="en", interim_results=False))]
    beside.cancel()
    assert finals == []
    assert ticks >= seconds, f"the loop ran other tasks {ticks} times in {seconds} s of audio"


def long_speech(repeats: int) -> bytes:
    """`repeats` real utterances with pauses: minutes of work for the model."""
    clip = np.concatenate([trimmed("agent-alreadyon"), silence(1.0, 16000),
                           trimmed("vm-nobodyavail"), silence(1.0, 16000)])
    return wav(np.concatenate([silence(0.5, 16000), *([clip] * repeats)]))


async def _post(port: int, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /v1/listen HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    return reader, writer


async def _transcribing(server: Server) -> None:
    """Until the upload's decodes have started."""
    assert server.files is not None
    decodes = server.engine.scheduler.batches
    async with asyncio.timeout(30):
        while server.files.in_flight == 0 or server.engine.scheduler.batches == decodes:
            await asyncio.sleep(0.02)


async def test_an_upload_stops_when_its_client_hangs_up(server: Server) -> None:
    """The client went away: its upload no longer holds a MAX_FILES place or the model."""
    assert server.files is not None
    _, writer = await _post(server.port, long_speech(30))
    await _transcribing(server)
    writer.transport.abort()  # the client vanishes
    async with asyncio.timeout(3):
        while server.files.in_flight or server.engine.queue_depth or server.posts.tasks:
            await asyncio.sleep(0.02)


async def test_a_stopping_server_cuts_an_upload_short_with_503(engine: Engine) -> None:
    server = Server(Config(host="127.0.0.1", port=0, shutdown_grace_s=1.0), engine)
    await server.start()
    try:
        reader, writer = await _post(server.port, long_speech(30))
        await _transcribing(server)
    finally:
        t0 = time.monotonic()
        await server.stop()
    assert time.monotonic() - t0 < 2.0
    assert not server.posts.tasks
    async with asyncio.timeout(3):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
    writer.close()
    assert head.startswith("HTTP/1.1 503"), head
    assert engine.queue_depth == 0
