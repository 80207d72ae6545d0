"""Fault and abuse suite: broken and hostile clients against the real server on loopback.

Each abuse may cost its own session, with a documented error and close code, and nothing else:
a well-behaved session running beside them gets exact finals, and afterwards the server's open
sessions, asyncio tasks, engine queue and memory are back where they started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, encode, exchange, silence, stream, until

KEY = "k3y-do-not-log"
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
async def guarded(engine: Engine) -> AsyncIterator[Server]:
    config = Config(host="127.0.0.1", port=0, api_keys=(KEY,), allowed_origins=(ORIGIN,),
                    max_sessions=6, idle_timeout_s=3.0, max_unsent_messages=32,
                    max_frame_bytes=64 * 1024, max_speed=10.0)
    async with Server(config, engine) as server:
        yield server


def url(server: Server, query: str = "") -> str:
    return f"{server.url}?token={KEY}{'&' + query if query else ''}"


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return kb / 1024


def speech(name: str, pause_s: float = 1.0) -> np.ndarray:
    return np.concatenate([silence(0.3, 16000), clip_at(name, 16000), silence(pause_s, 16000)])


async def test_abuse_costs_only_the_abusers_session(guarded: Server, engine: Engine) -> None:
    gc.collect()
    tasks0, rss0 = len(asyncio.all_tasks()), rss_mb()
    good = asyncio.create_task(stream(url(guarded), speech("agent-alreadyon"), speed=1.0))
    await _malformed_frames(guarded)
    await _rapid_connects(guarded)
    await _refused_handshakes(guarded)
    await _silent_and_slow_clients(guarded)
    result = await good
    assert wer(TRANSCRIPTS["agent-alreadyon"], result.text) <= 0.1
    assert result.close_code == 1000

    # afterwards a normal session works, and nothing is left behind
    after = await stream(url(guarded), speech("tt-weasels"), speed=4.0)
    assert wer(TRANSCRIPTS["tt-weasels"], after.text) <= 0.2
    async with asyncio.timeout(10):
        while guarded.session_count or engine.queue_depth:
            await asyncio.sleep(0.05)
    gc.collect()
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) <= tasks0 + 2, [t.get_name() for t in asyncio.all_tasks()]
    assert rss_mb() - rss0 < 60, f"memory grew from {rss0:.0f} to {rss_mb():.0f} MB"


async def _malformed_frames(server: Server) -> None:
    cases: list[tuple[str, tuple[bytes | str, ...], str | None, int]] = [
        ("", ("{not json", "[1, 2]", json.dumps({"type": "dance"}), "\x00\xff" * 10,
              json.dumps({"type": "end"})), "bad_message", 1000),
        ("", (b"\x01\x02\x03",), "bad_audio", 1007),  # odd-length PCM
        ("encoding=pcm_f32le", (np.array([0.1, np.nan], "<f4").tobytes(),), "bad_audio", 1007),
        ("encoding=pcm_f32le", (np.array([np.inf, 0], "<f4").tobytes(),), "bad_audio", 1007),
        ("", (b"\x00" * (64 * 1024 + 2),), "frame_too_large", 1009),
        ("", ("x" * (100 * 1024),), "frame_too_large", 1009),  # a 100 KiB text frame
        ("", ("x" * (1 << 20),), None, 1009),  # a megabyte: cut off by the websocket layer
        ("", (b"\x00" * (2 * 64 * 1024 + 2),), None, 1009),  # so is anything over 2x the limit
        ("", (os.urandom(4096 * 2),), None, 1000),  # binary noise is audio: no error
        ("sample_rate=100", (), "bad_parameter", 1008),
        ("sample_rate=96000", (), "bad_parameter", 1008),
        ("sample_rate=abc", (), "bad_parameter", 1008),
        ("encoding=mp3", (), "bad_parameter", 1008),
        ("language=xx-ZZ-long", (), "bad_parameter", 1008),
    ]
    for query, frames, code, close in cases:
        sent = frames if close != 1000 or code == "bad_message" else (
            *frames, json.dumps({"type": "end"}))
        messages, got = await exchange(url(server, query), *sent)
        codes = [m.get("code") for m in messages if m["type"] == "error"]
        assert got == close, (query, codes)
        assert (code in codes) if code else not codes, (query, codes)


async def _rapid_connects(server: Server) -> None:
    async def once(i: int) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            async with connect(url(server)) as ws:
                if i % 3 == 0:
                    await ws.send(encode(clip_at("tt-weasels", 16000)[:8000]))
                if i % 3 == 1:
                    ws.transport.abort()  # vanish without a close frame

    for start in range(0, 200, 4):  # 4 at a time: within --max-sessions beside `good`
        await asyncio.gather(*(once(i) for i in range(start, start + 4)))


async def _refused_handshakes(server: Server) -> None:
    for target, headers, status in (
        (server.url, {}, 401),  # no key
        (f"{server.url}?token=wrong", {}, 401),
        (server.url, {"Authorization": "Bearer wrong"}, 401),
        (url(server), {"Origin": "https://evil.example"}, 403),
    ):
        with pytest.raises(InvalidStatus) as refused:
            await exchange(target, additional_headers=headers)
        assert refused.value.response.status_code == status
        assert KEY.encode() not in refused.value.response.body
    ok, code = await exchange(server.url, json.dumps({"type": "end"}),
                              additional_headers={"Authorization": f"Bearer {KEY}",
                                                  "Origin": ORIGIN})
    assert ok[0]["type"] == "ready" and code == 1000


async def _silent_and_slow_clients(server: Server) -> None:
    # a client that never sends: closed after --idle-timeout-s
    t0 = time.monotonic()
    messages, code = await exchange(url(server))
    assert (messages[-1]["code"], code) == ("idle_timeout", 1008)
    assert 2.9 <= time.monotonic() - t0 < 6.5
    # a keep-alive keeps an idle session open past the idle timeout
    async with connect(url(server)) as ws:
        await ws.recv()
        for _ in range(3):
            await asyncio.sleep(1.5)
            await ws.send(json.dumps({"type": "keepalive"}))
        await ws.send(json.dumps({"type": "end"}))
        assert json.loads(await ws.recv())["type"] == "end"
    # too many sessions: the one past --max-sessions is refused (a server of its own, so
    # the idle timeout above cannot free a place meanwhile)
    async with Server(Config(host="127.0.0.1", port=0, max_sessions=2), server.engine) as small:
        holders = [await connect(small.url) for _ in range(2)]
        try:
            for ws in holders:
                assert json.loads(await ws.recv())["type"] == "ready"
            messages, code = await exchange(small.url)
            assert (messages[0]["code"], code) == ("overloaded", 1013)
        finally:
            for ws in holders:
                await ws.close()
    # a client that never reads: closed once --max-unsent-messages pile up, not buffered (a
    # server of its own whose idle timeout cannot end the session first, where this process
    # stalls between the session's `ready` and the first flooded frame)
    config = Config(host="127.0.0.1", port=0, max_unsent_messages=32, idle_timeout_s=60)
    async with Server(config, server.engine) as patient:
        await _slow_consumer(patient)


async def _slow_consumer(server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    async with connect(server.url, sock=sock, max_queue=1) as ws:
        await ws.recv()
        # the server's own send buffer small too: it finds the client not reading once the
        # kernel's buffers are full, and loopback's grow to megabytes
        (conn,) = server._ws.connections
        conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                           4096)

        async def flood() -> None:  # each bad frame earns an error message nobody reads
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.send("{" * 2000)

        flooder = asyncio.create_task(flood())
        async with asyncio.timeout(40):  # the server gives up on this client and closes
            while not flooder.done() and not server.metrics.registry.get_sample_value(
                    "rtasr_errors_total", {"code": "slow_consumer"}):
                await asyncio.sleep(0.05)
        flooder.cancel()
        unread: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):  # ... and says why once it can
            async for text in ws:
                unread.append(json.loads(text))
    assert unread[-1]["code"] == "slow_consumer" and ws.close_code == 1008, unread[-1:]
    await until(lambda: server.session_count == 0)


async def test_audio_faster_than_max_speed_is_slowed_not_buffered(guarded: Server) -> None:
    audio = encode(silence(40.0, 16000))  # 40 s; allowed: 5 s burst + 10x real time
    t0 = time.monotonic()
    messages, code = await exchange(url(guarded), *(audio[i : i + 32000]
                                                    for i in range(0, len(audio), 32000)),
                                    json.dumps({"type": "end"}))
    assert code == 1000 and messages[-1] == {"type": "end", "duration": 40.0}
    assert time.monotonic() - t0 >= (40 - 5) / 10 - 0.3


async def test_an_engine_fault_costs_one_final(guarded: Server, engine: Engine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    decode = engine.decode_batch
    doomed: set[str] = set()

    def faulty(requests: list[DecodeRequest], **kwargs: bool) -> Any:
        if any(r.session in doomed for r in requests):
            raise RuntimeError("injected fault")
        return decode(requests, **kwargs)

    monkeypatch.setattr(engine, "decode_batch", faulty)
    pcm = encode(speech("tt-weasels"))
    chunks = [pcm[i : i + 32000] for i in range(0, len(pcm), 32000)]
    async with connect(url(guarded, "interim_results=false")) as ws:
        doomed.add(json.loads(await ws.recv())["session_id"])
        other = asyncio.create_task(stream(url(guarded), speech("agent-alreadyon"), speed=4.0))
        for chunk in chunks:
            await ws.send(chunk)
        async with asyncio.timeout(30):
            while (error := json.loads(await ws.recv()))["type"] != "error":
                assert error["type"] in ("speech_start", "speech_end")
        assert error["code"] == "engine_error"
        doomed.clear()  # the session carries on: the next utterance is transcribed
        for chunk in chunks:
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "end"}))
        rest = [json.loads(m) async for m in ws]
    assert wer(TRANSCRIPTS["tt-weasels"], " ".join(m["text"] for m in rest
                                                    if m["type"] == "final")) <= 0.2
    assert wer(TRANSCRIPTS["agent-alreadyon"], (await other).text) <= 0.1


async def test_any_decode_failure_costs_one_final(guarded: Server, engine: Engine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On Ray a decode can fail with anything (an actor died, back-pressure): the utterance
    gets `engine_error` and the session's later finals still come."""
    transcribe = engine.transcribe
    doomed: set[str] = set()

    async def remote(request: DecodeRequest) -> Any:
        if request.session in doomed:
            raise ConnectionResetError("the ASR actor died")  # not an RtasrError
        return await transcribe(request)

    monkeypatch.setattr(engine, "transcribe", remote)
    pcm = encode(speech("tt-weasels"))
    chunks = [pcm[i : i + 32000] for i in range(0, len(pcm), 32000)]
    async with asyncio.timeout(40), connect(url(guarded, "interim_results=false")) as ws:
        doomed.add(json.loads(await ws.recv())["session_id"])
        for chunk in chunks:
            await ws.send(chunk)
        while (error := json.loads(await ws.recv()))["type"] != "error":
            assert error["type"] in ("speech_start", "speech_end")
        assert error["code"] == "engine_error"
        doomed.clear()
        for chunk in chunks:
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "end"}))
        rest = [json.loads(m) async for m in ws]
    assert wer(TRANSCRIPTS["tt-weasels"], " ".join(m["text"] for m in rest
                                                    if m["type"] == "final")) <= 0.2
    assert rest[-1]["type"] == "end"


async def test_metrics_and_logs(guarded: Server, caplog: pytest.LogCaptureFixture) -> None:
    import urllib.error
    import urllib.request

    with caplog.at_level("DEBUG"):
        await stream(url(guarded), speech("tt-weasels"), speed=4.0)
        await exchange(url(guarded), b"\x01")  # bad_audio
        with pytest.raises(InvalidStatus):
            await exchange(f"{guarded.url}?token=wrong")
    assert KEY not in caplog.text and "token=" not in caplog.text

    def get(path: str, key: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{guarded.port}{path}")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    # with --api-key, metrics need the key; health stays open for load balancers
    assert (await asyncio.to_thread(get, "/metrics"))[0] == 401
    assert (await asyncio.to_thread(get, "/metrics", "wrong"))[0] == 401
    assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
    status, text = await asyncio.to_thread(get, "/metrics", KEY)
    assert status == 200
    for name in ("rtasr_open_sessions", "rtasr_audio_received_seconds_total",
                 "rtasr_utterances_finalized_total", "rtasr_final_latency_seconds_bucket",
                 "rtasr_decode_seconds_bucket", "rtasr_engine_queue_depth",
                 'rtasr_rejected_connections_total{reason="unauthorized"}',
                 'rtasr_errors_total{code="bad_audio"}'):
        assert name in text, name
    finals = next(float(line.split()[1]) for line in text.splitlines()
                  if line.startswith("rtasr_utterances_finalized_total"))
    assert finals >= 1


async def test_sessions_end_at_max_session_s(engine: Engine) -> None:
    async with Server(Config(host="127.0.0.1", port=0, max_session_s=1.0), engine) as server:
        t0 = time.monotonic()
        received: list[dict[str, Any]] = []
        async with connect(server.url) as ws:
            received.append(json.loads(await ws.recv()))
            reader = asyncio.create_task(_collect(ws, received))
            with contextlib.suppress(ConnectionClosed):
                while not reader.done():  # keep-alives do not extend a session's life
                    await ws.send(json.dumps({"type": "keepalive"}))
                    await asyncio.sleep(0.2)
            await reader
        assert received[-1]["code"] == "session_too_long" and ws.close_code == 1008
        assert 1.0 <= time.monotonic() - t0 < 3


async def _collect(ws: Any, into: list[dict[str, Any]]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for text in ws:
            into.append(json.loads(text))
