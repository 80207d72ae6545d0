"""The real model behind the scheduler."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from rtasr.engine import Engine, Priority, Request
from rtasr.errors import EngineError
from rtasr.wer import wer

from .helpers import TRANSCRIPTS, clip_at


def req(name: str, priority: Priority = Priority.FINAL, session: str = "s") -> Request:
    return Request(audio=clip_at(name, 16000), priority=priority, session=session,
                   language="en", word_timestamps=True)


async def test_transcribes_real_speech_with_word_times(engine: Engine) -> None:
    result = await engine.transcribe(req("agent-alreadyon"))
    assert result is not None
    assert wer(TRANSCRIPTS["agent-alreadyon"], result.text) <= 0.1
    assert result.words and all(0 <= w.start <= w.end <= 6 for w in result.words)


async def test_music_gives_no_words(engine: Engine) -> None:
    result = await engine.transcribe(req("music-macroform-cold_day"))
    assert result is not None and result.text == "" and result.words == ()


async def test_a_newer_partial_replaces_a_queued_one(engine: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "partial_max_wait_s", 30.0)
    blockers = [asyncio.create_task(engine.transcribe(req("agent-alreadyon", session=f"b{i}")))
                for i in range(engine.workers)]
    await asyncio.sleep(0.05)  # the workers are busy with the blockers
    stale = asyncio.create_task(engine.transcribe(req("tt-weasels", Priority.PARTIAL)))
    await asyncio.sleep(0)
    fresh = asyncio.create_task(engine.transcribe(req("tt-weasels", Priority.PARTIAL)))
    assert await stale is None
    fresh_result = await fresh
    assert fresh_result is not None and "weasel" in fresh_result.text.lower()
    await asyncio.gather(*blockers)


async def test_finals_go_before_partials_and_late_partials_are_dropped(engine: Engine) -> None:
    blockers = [asyncio.create_task(engine.transcribe(req("agent-alreadyon", session=f"b{i}")))
                for i in range(engine.workers)]
    await asyncio.sleep(0.05)
    order: list[str] = []

    async def run(name: str, priority: Priority, session: str) -> None:
        result = await engine.transcribe(req(name, priority, session))
        order.append(f"{session}:{'dropped' if result is None else 'done'}")

    await asyncio.gather(run("tt-weasels", Priority.PARTIAL, "p"),
                         run("tt-weasels", Priority.FINAL, "f"), *blockers)
    # the partial queued first still ran after the final, or was dropped for waiting too long
    assert order[0] in ("f:done", "p:dropped")
    assert "f:done" in order


async def test_a_failing_request_costs_only_itself(engine: Engine) -> None:
    bad = Request(audio=np.zeros((2, 2), np.float32), priority=Priority.FINAL, session="bad")
    with pytest.raises(EngineError):
        await engine.transcribe(bad)
    good = await engine.transcribe(req("tt-weasels"))
    assert good is not None and wer(TRANSCRIPTS["tt-weasels"], good.text) <= 0.2


async def test_the_event_loop_stays_responsive_while_decoding(engine: Engine) -> None:
    decodes = asyncio.gather(*(engine.transcribe(req("agent-alreadyon", session=str(i)))
                               for i in range(4)))
    lags = []
    while not decodes.done():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - t - 0.01)
    await decodes
    assert len(lags) > 20
    assert max(lags) < 0.1, f"event loop blocked for {max(lags):.3f} s"
