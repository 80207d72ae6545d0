"""Shutdown is bounded by --shutdown-grace-s whatever the clients and the model do: finals
first, then close; a final that cannot come in time is reported, not lost in silence."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest
from rtasr.engine import Engine
from rtasr.server import Server

from .helpers import clip_at, encode, silence

GRACE_S = 1.0


def _handshake_and_never_read(port: int) -> socket.socket:
    """A websocket client that completes the handshake, then never reads again (it will not
    answer the server's close frame either)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    sock.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _hang_finals(engine: Engine, monkeypatch: pytest.MonkeyPatch, sessions: set[str]) -> None:
    """The model never answers the requests of `sessions` (a stuck GPU, a lost Ray actor)."""
    transcribe = engine.transcribe
    never = asyncio.Event()

    async def stuck(request: DecodeRequest) -> Any:
        if request.session in sessions:
            await never.wait()
        return await transcribe(request)

    monkeypatch.setattr(engine, "transcribe", stuck)


async def test_shutdown_ends_within_the_grace_whatever_the_clients_do(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    stuck: set[str] = set()
    _hang_finals(engine, monkeypatch, stuck)
    server = Server(Config(host="127.0.0.1", port=0, shutdown_grace_s=GRACE_S), engine)
    await server.start()
    mute = await asyncio.to_thread(_handshake_and_never_read, server.port)
    try:
        async with asyncio.timeout(30), connect(server.url) as ws:
            stuck.add(json.loads(await ws.recv())["session_id"])
            await ws.send(encode(silence(0.3, 16000)) + encode(clip_at("tt-weasels", 16000)))
            assert json.loads(await ws.recv())["type"] == "speech_start"
            while server.session_count < 2:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            await server.stop()
            took = time.monotonic() - t0
            rest = [json.loads(m) async for m in ws]
        assert took < GRACE_S + 1.0, f"shutdown took {took:.1f} s for a {GRACE_S} s grace"
        assert ws.close_code == 1001
        assert rest and rest[-1]["type"] == "end"
    finally:
        mute.close()
        await server.stop()


async def test_a_final_that_never_came_is_reported(engine: Engine,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    stuck: set[str] = set()
    _hang_finals(engine, monkeypatch, stuck)
    async with Server(Config(host="127.0.0.1", port=0, shutdown_grace_s=GRACE_S),
                      engine) as server:
        async with asyncio.timeout(30), connect(server.url) as ws:
            stuck.add(json.loads(await ws.recv())["session_id"])
            await ws.send(encode(silence(0.3, 16000)) + encode(clip_at("tt-weasels", 16000)))
            assert json.loads(await ws.recv())["type"] == "speech_start"
            with caplog.at_level("WARNING"):
                await server.stop()
            rest = [json.loads(m) async for m in ws]
        metrics = server.metrics.render().decode()
    assert [m["type"] for m in rest] == ["error", "end"], rest
    assert rest[0]["code"] == "final_timeout" and "1 utterance" in rest[0]["message"]
    assert 'rtasr_errors_total{code="final_timeout"} 1.0' in metrics
    assert any("final_timeout" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")


async def test_a_hung_decode_does_not_outlast_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decode stuck in the model (a worker thread that never returns) holds neither the
    shutdown nor the server's own engine past --shutdown-grace-s."""
    server = Server(Config(host="127.0.0.1", port=0, shutdown_grace_s=GRACE_S))
    await server.start()
    engine = server.engine
    decode = engine.decode_batch
    release = threading.Event()

    def stuck(requests: list[DecodeRequest], **kwargs: Any) -> Any:
        release.wait(30)
        return decode(requests, **kwargs)

    monkeypatch.setattr(engine, "decode_batch", stuck)
    try:
        async with asyncio.timeout(30), connect(server.url) as ws:
            await ws.recv()
            await ws.send(encode(silence(0.3, 16000)) + encode(clip_at("tt-weasels", 16000))
                          + encode(silence(1.0, 16000)))
            while engine.scheduler.batches == 0:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            await server.stop()
            took = time.monotonic() - t0
        assert took < GRACE_S + 1.0, f"shutdown took {took:.1f} s for a {GRACE_S} s grace"
    finally:
        release.set()
