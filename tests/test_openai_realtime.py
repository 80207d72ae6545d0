"""OpenAI's official Python SDK, unchanged, pointed at rtasr's `/v1/realtime?intent=transcription`.

The SDK's own realtime client connects, sends `session.update`, `input_audio_buffer.append`
and `commit`, and parses every server event into its own types, as it would against OpenAI.
The model is the real bundled one, the audio real recorded speech at 24 kHz.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.server import Server

from .helpers import assert_close_to_yardstick, clip_at, encode, silence

pytest.importorskip("openai")
from openai import AsyncOpenAI

pytestmark = pytest.mark.e2e
RATE = 24_000
CHUNK = RATE // 10  # 100 ms


@pytest.fixture(scope="module")
async def keyed(engine: Engine) -> AsyncIterator[Server]:
    async with Server(Config(host="127.0.0.1", port=0, api_keys=("s3cret",)), engine) as srv:
        yield srv


def session(turn_detection: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                                "transcription": {"model": "whisper-1", "language": "en"},
                                "turn_detection": turn_detection,
                                "noise_reduction": {"type": "near_field"}}}}


async def transcribe(port: int, audio: np.ndarray, *, turn_detection: dict[str, Any] | None,
                     commit: bool = False, key: str = "s3cret", speed: float = 3.0
                     ) -> list[Any]:
    """Stream `audio` through the SDK's realtime client; the events until every turn is
    completed, then close."""
    client = AsyncOpenAI(api_key=key, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    events: list[Any] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"},
                                       max_retries=0) as conn:
        first = await conn.recv()
        assert first.type == "session.created"
        await conn.session.update(session=session(turn_detection))  # type: ignore[arg-type]
        updated = await conn.recv()
        assert updated.type == "session.updated", updated
        pcm = encode(audio)
        for i in range(0, len(pcm), CHUNK * 2):
            await conn.input_audio_buffer.append(audio=base64.b64encode(
                pcm[i : i + CHUNK * 2]).decode())
            await asyncio.sleep(0.1 / speed)
        if commit:
            await conn.input_audio_buffer.commit()
        async with asyncio.timeout(30):
            async for event in conn:
                events.append(event)
                if settled(events):
                    break
    return events


def settled(events: list[Any]) -> bool:
    """Every turn that started has stopped, and every committed one is completed."""
    kinds = [e.type for e in events]
    done = kinds.count("conversation.item.input_audio_transcription.completed")
    return done > 0 and done == kinds.count("input_audio_buffer.committed") and (
        kinds.count("input_audio_buffer.speech_started")
        == kinds.count("input_audio_buffer.speech_stopped"))


def turns(events: list[Any]) -> list[str]:
    """The speech events, as a client tracking the user's turn sees them: they must
    alternate, started then stopped (a cut in running speech ends no turn)."""
    return [e.type.removeprefix("input_audio_buffer.speech_") for e in events
            if e.type.startswith("input_audio_buffer.speech_")]


def completed(events: list[Any]) -> list[Any]:
    return [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]


async def test_server_vad_streams_deltas_then_completed(server: Server) -> None:
    name = "conf-usermenu-162"
    audio = np.concatenate([silence(0.5, RATE), clip_at(name, RATE), silence(1.5, RATE)])
    events = await transcribe(server.port, audio,
                              turn_detection={"type": "server_vad", "silence_duration_ms": 600,
                                              "prefix_padding_ms": 300, "threshold": 0.5})
    finals = completed(events)
    text = " ".join(e.transcript for e in finals)
    assert_close_to_yardstick(server.engine, text, [name])
    kinds = [e.type for e in events]
    assert kinds.count("input_audio_buffer.committed") == len(finals)
    assert turns(events) == ["started", "stopped"]
    deltas = [e for e in events if e.type.endswith("transcription.delta")]
    # a delta is never taken back: each item's deltas spell its transcript, and come first;
    # the turn's speech_started names its first item (a cut in the speech opens the next)
    for n, final in enumerate(finals):
        mine = [e for e in events if getattr(e, "item_id", None) == final.item_id]
        assert (mine[0].type == "input_audio_buffer.speech_started") == (n == 0)
        assert mine[-1] is final
        assert "".join(e.delta for e in mine if e in deltas) == final.transcript
        assert final.usage.type == "duration" and final.usage.seconds > 0
    # partials came before the end of speech: some text arrived before its turn was stopped
    assert kinds.index("conversation.item.input_audio_transcription.delta") < kinds.index(
        "input_audio_buffer.speech_stopped")


async def test_manual_commit_is_one_item(server: Server) -> None:
    """turn_detection null: the pauses inside the clip end no turn; commit ends it."""
    name = "vm-mismatch"
    audio = np.concatenate([silence(0.3, RATE), clip_at(name, RATE), silence(0.3, RATE)])
    events = await transcribe(server.port, audio, turn_detection=None, commit=True)
    kinds = [e.type for e in events]
    assert "input_audio_buffer.speech_started" not in kinds
    [committed] = [e for e in events if e.type == "input_audio_buffer.committed"]
    [final] = completed(events)
    assert final.item_id == committed.item_id and events[-1] is final
    deltas = [e.delta for e in events if e.type.endswith(".delta")]
    assert len(deltas) > 1 and "".join(deltas) == final.transcript
    assert {e.item_id for e in events} == {final.item_id}
    assert_close_to_yardstick(server.engine, final.transcript, [name])


async def test_commit_of_silence_completes_empty(server: Server) -> None:
    events = await transcribe(server.port, silence(1.0, RATE), turn_detection=None,
                              commit=True)
    assert [e.type for e in events] == ["input_audio_buffer.committed",
                                        "conversation.item.input_audio_transcription.completed"]
    assert events[1].transcript == ""


async def test_key_is_checked(keyed: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:  # the SDK's Bearer key, refused
        await transcribe(keyed.port, silence(0.2, RATE), turn_detection=None, key="wrong")
    assert refused.value.response.status_code == 401
    events = await transcribe(keyed.port, silence(0.2, RATE), turn_detection=None,
                              commit=True)
    assert completed(events)


async def test_session_update_mid_call_is_applied_not_refused(server: Server) -> None:
    """Pipecat sends a new `session.update` whenever its settings change mid-call (a new
    prompt or language) and takes any `error` as fatal. The update, in the middle of the
    first utterance, is acknowledged; the speech before and after it is transcribed; and
    the connection stays open."""
    names = ["agent-alreadyon", "vm-mismatch"]
    vad = {"type": "server_vad", "silence_duration_ms": 600}
    first = clip_at(names[0], RATE)
    half = len(first) // 2
    before = np.concatenate([silence(0.3, RATE), first[:half]])
    gap = np.concatenate([first[half:], silence(1.2, RATE)])
    after = np.concatenate([gap, clip_at(names[1], RATE), silence(1.5, RATE)])
    second_ms = (len(before) + len(gap)) * 1000 // RATE
    client = AsyncOpenAI(api_key="any", base_url=f"http://127.0.0.1:{server.port}/v1",
                         max_retries=0)
    events: list[Any] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"},
                                       max_retries=0) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(session=session(vad))  # type: ignore[arg-type]
        assert (await conn.recv()).type == "session.updated"
        await append(conn, before)
        update = session(vad)
        update["audio"]["input"]["transcription"].update(
            language="en", prompt="Agent logon, passwords.")
        await conn.session.update(session=update)  # type: ignore[arg-type]
        await append(conn, after)
        async with asyncio.timeout(30):
            async for event in conn:
                events.append(event)
                if settled(events) and event.type.endswith(".completed") and any(
                        e.type == "input_audio_buffer.speech_stopped"
                        and e.audio_end_ms > second_ms for e in events):
                    break
        # still open: another update is answered on the same socket
        await conn.session.update(session=session(None))  # type: ignore[arg-type]
        async with asyncio.timeout(10):
            again = await conn.recv()
    assert [e for e in events if e.type == "error"] == []
    # the update and the pauses inside the clips end no turn: one per clip
    assert turns(events) == ["started", "stopped"] * 2
    [updated] = [e for e in events if e.type == "session.updated"]
    assert updated.session.audio.input.transcription.prompt == "Agent logon, passwords."
    assert again.type == "session.updated" and again.session.audio.input.turn_detection is None
    # items are committed in order; the first turn's speech_stopped names its last item
    # (a pause inside a clip may cut it into two items, in one turn)
    order = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    first_stop = next(e for e in events if e.type == "input_audio_buffer.speech_stopped")
    split = order.index(first_stop.item_id) + 1
    for name, items in zip(names, (order[:split], order[split:]), strict=True):
        text = " ".join(e.transcript for e in completed(events) if e.item_id in items)
        # the new prompt lands mid-way through the first clip, which the whole decode
        # lacks ("logged on" heard "log done"): two words over it there
        assert_close_to_yardstick(server.engine, text, [name], slack_words=2)


async def append(conn: Any, audio: np.ndarray, speed: float = 3.0) -> None:
    """`audio` in 100 ms `input_audio_buffer.append` events, at `speed` x real time."""
    pcm = encode(audio)
    for i in range(0, len(pcm), CHUNK * 2):
        await conn.input_audio_buffer.append(audio=base64.b64encode(
            pcm[i : i + CHUNK * 2]).decode())
        await asyncio.sleep(0.1 / speed)


async def test_switching_to_server_vad_mid_call_commits_the_manual_turn(server: Server) -> None:
    """turn_detection null, then server_vad while the first turn is still open: that turn is
    committed (before `session.updated`) and completed with its words; what follows is
    turned by the server's VAD."""
    names = ["conf-noempty", "transfer"]
    client = AsyncOpenAI(api_key="any", base_url=f"http://127.0.0.1:{server.port}/v1",
                         max_retries=0)
    events: list[Any] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"},
                                       max_retries=0) as conn:
        await conn.session.update(session=session(None))  # type: ignore[arg-type]
        await append(conn, np.concatenate([silence(0.3, RATE), clip_at(names[0], RATE),
                                           silence(0.3, RATE)]))
        await conn.session.update(session=session(  # type: ignore[arg-type]
            {"type": "server_vad", "silence_duration_ms": 600}))
        await append(conn, np.concatenate([clip_at(names[1], RATE), silence(1.5, RATE)]))
        async with asyncio.timeout(30):
            async for event in conn:
                events.append(event)
                if settled(events) and event.type.endswith(".completed") and any(
                        e.type == "input_audio_buffer.speech_stopped" for e in events):
                    break
    kinds = [e.type for e in events]
    assert "error" not in kinds
    manual, *turned = completed(events)
    assert kinds.index("input_audio_buffer.committed") < kinds.index("session.updated", 2)
    assert not any(e.type == "input_audio_buffer.speech_started" and e.item_id == manual.item_id
                   for e in events)
    assert_close_to_yardstick(server.engine, manual.transcript, [names[0]])
    text = " ".join(e.transcript for e in turned)
    assert_close_to_yardstick(server.engine, text, [names[1]])
