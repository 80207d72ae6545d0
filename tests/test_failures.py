"""No failure loses a word silently: a bug in a session's decode handling, a decode that
failed, a shutdown that cut a stream short, each is seen (logged, reported to the client)
and costs that session, or that utterance, only. Real server, real model, real speech."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtasr.config import Config
from rtasr.core.session import Session
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, encode, silence, stream


def speech(name: str, pause_s: float = 1.0) -> np.ndarray:
    return np.concatenate([silence(0.3, 16000), clip_at(name, 16000), silence(pause_s, 16000)])


@pytest.fixture(scope="module")
async def srv(engine: Engine) -> AsyncIterator[Server]:
    async with Server(Config(host="127.0.0.1", port=0, max_speed=10.0), engine) as server:
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
            try:
                for i in range(0, len(pcm), 32000):
                    await ws.send(pcm[i : i + 32000])
                    await asyncio.sleep(0.05)
                while True:
                    messages.append(json.loads(await ws.recv()))
            except ConnectionClosed:
                pass
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
