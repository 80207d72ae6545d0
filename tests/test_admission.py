"""Admission: a full or overloaded server refuses new sessions with `overloaded`, close 1013."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.asyncio.client import connect

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, silence, stream, until


async def refusal(url: str) -> tuple[dict[str, object], int | None]:
    async with connect(url) as ws:
        message = json.loads(await ws.recv())
        await ws.wait_closed()
        return message, ws.close_code


def healthz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def test_max_sessions_refuses_the_next_and_healthz_says_full(engine: Engine) -> None:
    async with Server(Config(host="127.0.0.1", port=0, max_sessions=1), engine) as server:
        audio = np.concatenate([silence(0.3, 16000), clip_at("tt-weasels", 16000),
                                silence(1.0, 16000)])
        first = asyncio.create_task(stream(server.url, audio, speed=1.0))
        async with asyncio.timeout(10):
            while server.session_count == 0:  # wait until the first is admitted
                await asyncio.sleep(0.01)
        message, code = await refusal(server.url)
        assert message["type"] == "error" and message["code"] == "overloaded"
        assert code == 1013
        status, health = await asyncio.to_thread(healthz, server.port)
        assert status == 503 and health["ready"] is False and health["sessions"] == 1
        result = await first  # the admitted session is untouched
        assert wer(TRANSCRIPTS["tt-weasels"], result.text) <= 0.2
        await until(lambda: server.session_count == 0)  # the server saw the close
        status, health = await asyncio.to_thread(healthz, server.port)
        assert status == 200 and health["ready"] is True


async def test_finals_waiting_too_long_refuse_new_sessions(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Server(Config(host="127.0.0.1", port=0, max_final_wait_ms=500), engine) as server:
        monkeypatch.setattr(engine.scheduler, "recent_final_wait_s", lambda: 0.8)
        message, code = await refusal(server.url)
        assert (message["code"], code) == ("overloaded", 1013)
        assert "behind" in str(message["message"])
        monkeypatch.setattr(engine.scheduler, "recent_final_wait_s", lambda: 0.2)
        async with connect(server.url) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
