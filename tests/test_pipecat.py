"""Pipecat's own STT services, unchanged, pointed at a real rtasr on loopback.

`OpenAIRealtimeSTTService` (OpenAI realtime transcription), `OpenAISTTService` (OpenAI's REST
`/v1/audio/transcriptions`) and `DeepgramSTTService` (Deepgram live, through deepgram-sdk),
each in a minimal pipeline (`Pipeline` + `PipelineWorker` + `WorkerRunner`, pipecat 1.3's
names for `PipelineTask` + `PipelineRunner`): audio frames queued into it as a transport
pushes them, the VAD frames a local VAD (Silero) would emit around each utterance, and a
processor at the end that collects what the service pushes downstream. Shutdown is an
`EndFrame`, as when a call ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from rtasr.server import Server

from .helpers import assert_close_to_yardstick, encode, silence, trimmed

pytest.importorskip("pipecat")
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    StartFrame,
    STTUpdateSettingsFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.openai.stt import OpenAIRealtimeSTTService, OpenAISTTService
from pipecat.transcriptions.language import Language

pytestmark = pytest.mark.e2e
RATE = 16000  # the pipeline's input rate; each service resamples as it needs
SPEED = 4.0  # x real time; rtasr's --max-speed is 10
STOP_S = 0.2  # the silence after which the VAD frame says the user stopped


class Collector(FrameProcessor):
    """The end of the pipeline: keeps the frames the STT service pushed downstream;
    `until(cond)` waits for a condition on them (woken by each new frame, never a timer)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame | InterimTranscriptionFrame | TranscriptionFrame
                      | ErrorFrame):
            self.frames.append(frame)
            self._changed.set()
        await self.push_frame(frame, direction)

    async def until(self, cond: Callable[[list[Frame]], bool], timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s):
            while not cond(self.frames):
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: type[Frame]) -> list[Any]:
        return [f for f in self.frames if type(f) is kind]


class Call:
    """One pipeline around `service`, run by a PipelineRunner until `end()`."""

    def __init__(self, service: FrameProcessor) -> None:
        self.out = Collector()
        self.task = PipelineWorker(Pipeline([service, self.out]),
                                   params=PipelineParams(audio_in_sample_rate=RATE),
                                   idle_timeout_secs=None, enable_rtvi=False)
        self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.task)
        await runner.run()

    async def started(self) -> None:
        await self.out.until(lambda frames: any(isinstance(f, StartFrame) for f in frames))

    async def audio(self, audio: np.ndarray, frame_s: float = 0.02) -> None:
        """Audio frames as a transport pushes them (20 ms), at SPEED x real time."""
        pcm, step = encode(audio), int(RATE * frame_s) * 2
        for i in range(0, len(pcm), step):
            await self.task.queue_frame(InputAudioRawFrame(pcm[i : i + step], RATE, 1))
            await asyncio.sleep(frame_s / SPEED)

    async def utterance(self, audio: np.ndarray) -> int:
        """Speech between the frames a local VAD sends: started, then stopped after STOP_S of
        silence. How many frames had come out when the stop was sent."""
        await self.task.queue_frame(VADUserStartedSpeakingFrame())
        await self.audio(np.concatenate([audio, silence(STOP_S, RATE)]))
        came = len(self.out.frames)
        await self.task.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=STOP_S))
        return came

    async def end(self) -> None:
        """EndFrame: the services close their connections and the runner returns."""
        await self.task.queue_frame(EndFrame())
        async with asyncio.timeout(20):
            await self._runner


@pytest.fixture
async def call() -> AsyncIterator[Callable[[FrameProcessor], Call]]:
    calls: list[Call] = []

    def start(service: FrameProcessor) -> Call:
        calls.append(Call(service))
        return calls[-1]

    yield start
    for c in calls:  # a failed test still stops its pipeline
        if not c._runner.done():
            await c.task.cancel()


def finals_count(n: int) -> Callable[[list[Frame]], bool]:
    return lambda frames: sum(type(f) is TranscriptionFrame for f in frames) >= n


async def test_openai_realtime_service(server: Server,
                                       call: Callable[[FrameProcessor], Call]) -> None:
    """The default mode (local VAD, turn_detection null): deltas stream while the user
    speaks, each VADUserStoppedSpeakingFrame commits the buffer, and that item's transcript
    comes back as the final; the next utterance is the next item."""
    names = ["agent-alreadyon", "conf-noempty"]
    c = call(OpenAIRealtimeSTTService(
        api_key="any", base_url=f"ws://127.0.0.1:{server.port}/v1/realtime",
        settings=OpenAIRealtimeSTTService.Settings(model="whisper-1")))
    await c.started()
    await c.audio(silence(0.3, RATE))
    stops = []
    for turn, name in enumerate(names, 1):
        stops.append(await c.utterance(trimmed(name, RATE)))
        await c.out.until(finals_count(turn))
        await c.audio(silence(0.3, RATE))
    await c.end()
    finals = c.out.of(TranscriptionFrame)
    for name, frame in zip(names, finals, strict=True):
        assert_close_to_yardstick(server.engine, frame.text, [name])
        assert frame.result["type"] == "conversation.item.input_audio_transcription.completed"
    # the first (16 words) streamed deltas before its commit; deltas spell each transcript
    assert any(type(f) is InterimTranscriptionFrame for f in c.out.frames[: stops[0]])
    for frame in finals:
        item = frame.result["item_id"]
        assert "".join(f.text for f in c.out.of(InterimTranscriptionFrame)
                       if f.result["item_id"] == item) == frame.text
    assert c.out.of(ErrorFrame) == []


async def test_openai_realtime_settings_change_mid_call_keeps_the_connection(
        server: Server, call: Callable[[FrameProcessor], Call],
        caplog: pytest.LogCaptureFixture) -> None:
    """An STTUpdateSettingsFrame (a new prompt and language) in the middle of an utterance:
    the service sends `session.update` on the open socket; rtasr acknowledges it (an `error`
    would make Pipecat drop the socket and reconnect), so the server sees one session and
    both utterances, the one the update interrupted included, are transcribed."""
    caplog.set_level(logging.INFO, logger="rtasr.server.gateway")
    names = ["transfer", "vm-mismatch"]
    c = call(OpenAIRealtimeSTTService(
        api_key="any", base_url=f"ws://127.0.0.1:{server.port}/v1/realtime",
        settings=OpenAIRealtimeSTTService.Settings(model="whisper-1")))
    await c.started()
    await c.audio(silence(0.3, RATE))
    await c.utterance(trimmed(names[0], RATE))
    await c.out.until(finals_count(1))
    second = trimmed(names[1], RATE)
    await c.task.queue_frame(VADUserStartedSpeakingFrame())
    await c.audio(second[: len(second) // 2])
    await c.task.queue_frame(STTUpdateSettingsFrame(delta=OpenAIRealtimeSTTService.Settings(
        prompt="Passwords and extensions.", language=Language.EN)))
    await c.audio(np.concatenate([second[len(second) // 2 :], silence(STOP_S, RATE)]))
    await c.task.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=STOP_S))
    await c.out.until(finals_count(2))
    await c.end()
    for name, frame in zip(names, c.out.of(TranscriptionFrame), strict=True):
        assert_close_to_yardstick(server.engine, frame.text, [name])
    assert c.out.of(ErrorFrame) == []
    opened = [r for r in caplog.records if r.getMessage().startswith("open (openai-realtime)")]
    assert len(opened) == 1


async def test_openai_rest_service(server: Server, call: Callable[[FrameProcessor], Call]) -> None:
    """OpenAISTTService keeps each VAD-bounded segment and posts it as a WAV file to
    `/v1/audio/transcriptions`: one final per utterance (a file API has no interims)."""
    names = ["vm-nobodyavail", "transfer"]
    c = call(OpenAISTTService(api_key="any", base_url=f"http://127.0.0.1:{server.port}/v1",
                              settings=OpenAISTTService.Settings(model="whisper-1")))
    await c.started()
    await c.audio(silence(0.3, RATE))
    for turn, name in enumerate(names, 1):
        await c.utterance(trimmed(name, RATE))
        await c.out.until(finals_count(turn))
    await c.end()
    finals = c.out.of(TranscriptionFrame)
    for name, frame in zip(names, finals, strict=True):
        assert_close_to_yardstick(server.engine, frame.text, [name])
    assert c.out.of(ErrorFrame) == []


async def test_deepgram_service_finalizes_on_vad_stop(
        server: Server, call: Callable[[FrameProcessor], Call]) -> None:
    """DeepgramSTTService sends Finalize on VADUserStoppedSpeakingFrame, STOP_S after the last
    word, long before rtasr's own endpoint: the final comes back `from_finalize` (the service
    marks its frame `finalized`), and the same connection transcribes the next utterance."""
    names = ["conf-waitforleader", "vm-tempgreetactive"]
    c = call(DeepgramSTTService(api_key="any", base_url=f"ws://127.0.0.1:{server.port}"))
    await c.started()
    await c.audio(silence(0.3, RATE))
    for turn, name in enumerate(names, 1):
        await c.utterance(trimmed(name, RATE))
        await c.out.until(finals_count(turn))  # no audio sent after the stop: the Finalize
        await c.audio(silence(0.3, RATE))
    await c.end()
    finals = c.out.of(TranscriptionFrame)
    for name, frame in zip(names, finals, strict=True):
        assert_close_to_yardstick(server.engine, frame.text, [name])
        assert frame.result.from_finalize is True and frame.finalized
    interims = c.out.of(InterimTranscriptionFrame)
    assert interims and c.out.frames.index(interims[0]) < c.out.frames.index(finals[0])
    assert c.out.of(ErrorFrame) == []
