"""No client exhausts the server by outpacing it: a session's finals waiting on the model are
bounded (the reader stops reading instead), and a client that stops reading is ended with
`slow_consumer` without its earned finals being dropped. Real server, real model, real speech,
real websocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest, Priority
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server
from rtasr.server.in_flight import MAX_FINALS_WAITING

from .helpers import TRANSCRIPTS, clip_at, encode, silence, stream, trimmed, until

CLIPS = ["tt-weasels", "vm-nobodyavail", "agent-alreadyon", "conf-onlyperson",
         "vm-rec-name", "auth-incorrect", "pbx-invalid", "vm-opts"]


@pytest.fixture(scope="module")
async def srv(engine: Engine) -> AsyncIterator[Server]:
    async with Server(Config(host="127.0.0.1", port=0, max_speed=10.0), engine) as server:
        yield server


async def test_a_client_faster_than_the_model_waits_and_loses_nothing(
        srv: Server, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight utterances at 10x real time to a model that takes 0.8 s per final, one at a
    time: the session never has more than MAX_FINALS_WAITING finals (and its open
    utterance's one decode) waiting on the model, and every utterance comes back."""
    transcribe = engine.transcribe
    model = asyncio.Lock()  # the slow model decodes one final at a time
    waiting = [0, 0]  # final-priority requests waiting now, and the most at once

    async def slow(request: DecodeRequest) -> Any:
        if request.priority is not Priority.FINAL:
            return await transcribe(request)
        waiting[0] += 1
        waiting[1] = max(waiting)
        try:
            async with model:
                await asyncio.sleep(0.8)
                return await transcribe(request)
        finally:
            waiting[0] -= 1

    monkeypatch.setattr(engine, "transcribe", slow)
    audio = np.concatenate([part for name in CLIPS
                            for part in (clip_at(name, 16000), silence(1.2, 16000))])
    result = await stream(srv.url, np.concatenate([silence(0.3, 16000), audio]), speed=10.0,
                          query="interim_results=false", timeout_s=120)
    assert waiting[1] <= MAX_FINALS_WAITING + 1, waiting
    assert result.close_code == 1000 and result.messages[-1]["type"] == "end"
    assert len(result.of("final")) >= len(CLIPS)
    said = " ".join(TRANSCRIPTS[name] for name in CLIPS)
    assert wer(said, result.text) <= 0.05, result.text


async def test_a_client_that_stops_reading_is_ended_and_keeps_its_finals(srv: Server) -> None:
    """A client that stops reading (a small receive buffer, nothing read) while it floods the
    server with messages that each earn an error reply: past --max-unsent-messages unread the
    session ends with `slow_consumer`, 1008, and the final of what it said before is queued
    ahead of that error, not dropped; a client that reads again gets it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
    pcm = encode(np.concatenate([silence(0.3, 16000), trimmed("tt-weasels")]))
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(90), connect(srv.url, sock=sock, max_queue=1) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for i in range(0, len(pcm), 3200):  # speech, its utterance left open
            await ws.send(pcm[i : i + 3200])
        (conn,) = srv.gateway.connections

        async def flood() -> None:
            for _ in range(50_000):
                await ws.send("not json")

        flooding = asyncio.create_task(flood())
        await until(lambda: conn._stop.done(), timeout=60)
        flooding.cancel()
        # the session ended: its open utterance is finalized while the client reads nothing
        await until(lambda: conn.session.ended and not conn.session.awaiting_finals,
                    timeout=30)
        try:
            while True:
                messages.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass
    kinds = [m["type"] for m in messages]
    assert ws.close_code == 1008, kinds[-5:]
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == "slow_consumer"
    finals = [m for m in messages if m["type"] == "final"]
    assert kinds[-2:] == ["final", "error"], kinds[-5:]  # earned when the session ended
    assert wer(TRANSCRIPTS["tt-weasels"], " ".join(f["text"] for f in finals)) <= 1 / 6


async def test_a_burst_of_messages_from_a_client_that_reads_is_answered(srv: Server) -> None:
    """300 bad messages in one burst, each answered with an error, from a client that
    reads: more than --max-unsent-messages replies are queued within one read of the socket,
    but the client reads them, so the session carries on."""
    async with asyncio.timeout(30), connect(srv.url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for _ in range(300):
            await ws.send("not json")
        codes = [json.loads(await ws.recv())["code"] for _ in range(300)]
        await ws.send(json.dumps({"type": "end"}))
        assert json.loads(await ws.recv())["type"] == "end"
    assert set(codes) == {"bad_message"} and ws.close_code == 1000
