"""Transcribing an uploaded file, the same for every REST API (openai_audio.py,
deepgram_prerecorded.py).

An upload is decoded with PyAV (any container or codec it reads, or raw PCM/G.711 when the
client names the encoding) to 16 kHz mono s16le, then runs through the same `Session` as a
live stream (its segmentation, its finals), as a session sending faster than real time: its
decodes rank below every live session's finals (scheduler.py), and at most `workers - 1` file
decodes run at once, across both APIs, so one worker is free for a live final (at
`--workers 1`, one file decode runs, and a live final waits for it). An utterance that could
not be transcribed fails the whole request (500, each API's error body): a transcript with
words missing is never answered as a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from ...config import SAMPLE_RATE_HZ, Config
from ...core.actions import Action
from ...core.engine_api import DecodeRequest, Load, ModelInfo, Transcript
from ...core.protocol import Error, Final, StreamParams
from ...core.session import Session
from ...errors import RtasrError
from ..http_post import PostRequest
from ..in_flight import MAX_FINALS_WAITING, Decodes
from ..interfaces import Embed, EngineLike

log = logging.getLogger(__name__)

MAX_AUDIO_S = 3600.0  # decoded audio held in memory: 115 MB of 16 kHz s16 at most
CHUNK = SAMPLE_RATE_HZ * 2  # 1 s of s16le per feed
SPOOL_BYTES = 1 << 20  # an upload past this is spooled to disk
READ_TIMEOUT_S = 30.0  # between two reads of a request body
MAX_FILES = 4  # uploads read, decoded and transcribed at once, across the REST APIs
NOT_REALTIME = Load(realtime=False)  # a file: its decodes yield to live sessions'


class RequestError(RtasrError):
    """A request refused with an HTTP status; each API renders it in its own error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True)
class RawFormat:
    """Headerless audio, as the client describes it: PyAV's demuxer name and its rate."""

    demuxer: str  # "s16le", "mulaw", "alaw"
    sample_rate_hz: int


def check_length(request: PostRequest, limit: int) -> None:
    """Refuse (413) a body longer than `limit`, from its Content-Length, before reading it."""
    if request.length > limit:
        raise RequestError(413, f"the upload is {request.length} bytes; at most {limit} bytes "
                                "are accepted")


async def body_chunks(request: PostRequest) -> AsyncIterator[bytes]:
    """The body's Content-Length bytes as they arrive. Raises RequestError if it ends early."""
    left = request.length
    while left > 0:
        async with asyncio.timeout(READ_TIMEOUT_S):
            chunk = await request.reader.read(min(left, 1 << 16))
        if not chunk:
            raise RequestError(400, "the request body ended early")
        left -= len(chunk)
        yield chunk


async def read_body(request: PostRequest, limit: int) -> tuple[IO[bytes], str]:
    """The whole body (spooled to disk past 1 MiB) and its SHA-256. Raises RequestError."""
    check_length(request, limit)
    if request.length <= 0:
        raise RequestError(400, "the request body is empty: send the audio file's bytes, with "
                                "their Content-Length")
    body: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    digest = hashlib.sha256()
    try:
        async for chunk in body_chunks(request):
            digest.update(chunk)
            body.write(chunk)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body, digest.hexdigest()


async def drain(request: PostRequest) -> None:
    """Read the rest of a refused body unkept (at most 10 s), so the client sees the answer."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while await request.reader.read(1 << 16):
                pass


def decode(source: IO[bytes], raw: RawFormat | None = None, *, max_s: float = MAX_AUDIO_S,
           param: str = "file") -> bytes:
    """The upload's audio as 16 kHz mono s16le. Raises RequestError (400, or 413 past
    `max_s`); `param` names the form field in the error."""
    import av

    source.seek(0)
    limit = int(max_s * SAMPLE_RATE_HZ * 2)
    out = io.BytesIO()
    options = {"sample_rate": str(raw.sample_rate_hz), "ch_layout": "mono"} if raw else {}
    try:
        with av.open(source, mode="r", format=raw.demuxer if raw else None,
                     options=options) as container:
            if not container.streams.audio:
                raise RequestError(400, "the file has no audio stream", param=param)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
            for frame in [*container.decode(audio=0), None]:
                for f in resampler.resample(frame):
                    out.write(f.to_ndarray().tobytes())
                if out.tell() > limit:
                    raise RequestError(413, f"the audio is longer than {max_s:g} s",
                                       param=param)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the file is not audio that can be decoded ({exc})",
                           param=param) from None
    return out.getvalue()


def duration_s(pcm: bytes) -> float:
    return len(pcm) / 2 / SAMPLE_RATE_HZ


class FileTranscriber:
    """Finals from decoded files, for every REST API of one server (one shared bound on
    file decodes in flight)."""

    def __init__(self, config: Config, engine: EngineLike, model: ModelInfo,
                 embed: Embed | None = None) -> None:
        self.config, self.engine, self.model = config, engine, model  # config: resolved
        self.embed = embed  # speaker embeddings (--diarize), for params with diarize on
        self.slots = asyncio.Semaphore(max(1, config.workers - 1))  # file decodes in flight
        self.in_flight = 0  # files admitted, from their first byte read to their last final

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """One file's turn, from reading its body to its last final: each may hold 256 MiB
        on disk and an hour of audio in memory, so past MAX_FILES the next is refused (429)
        rather than queued behind them."""
        if self.in_flight >= MAX_FILES:
            raise RequestError(429, f"{MAX_FILES} files are being transcribed, the most at "
                                    "once: retry when one is done")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def finals(self, pcm: bytes, params: StreamParams,
                     known_speakers: list[np.ndarray] | None = None) -> AsyncIterator[Final]:
        """The file's finals in order, through a Session that is not real time, fed while
        fewer than MAX_FINALS_WAITING of its finals wait on the engine (as a websocket
        session is read), and yielding to the event loop after every
        second of audio (an hour of silence is 3,600 short turns, not one long one).

        Raises RequestError (500) at the first utterance that could not be transcribed, or
        after a bug in handling a decode: an answer with words missing is never given.
        Cancelling it (the client hung up, the server stops) cancels its decodes.
        `known_speakers`: reference voices' embeddings (diarize on), speakers 0, 1, ..."""
        session = Session(self.config, params, "file", params.language)
        if known_speakers:
            session.enroll_speakers(known_speakers)
        ready: list[Final] = []
        failed: list[RequestError] = []

        def dispatch(actions: list[Action]) -> None:
            for message in decodes.start(actions):
                if failed:  # nothing after a lost utterance is given
                    break
                if isinstance(message, Final):
                    ready.append(message)
                elif isinstance(message, Error) and not failed:
                    failed.append(RequestError(500, f"{message.message}: the transcript would "
                                                    "miss its words; retry the request"))

        def fail(exc: Exception) -> None:
            failed.append(RequestError(500, f"internal error ({type(exc).__name__})"))

        decodes = Decodes(session, self._decode, dispatch, log, fail, self.embed)
        try:
            for i in range(0, len(pcm) + CHUNK, CHUNK):
                dispatch(session.feed(pcm[i : i + CHUNK], NOT_REALTIME) if i < len(pcm)
                         else session.end())
                await asyncio.sleep(0)  # live sessions' turn
                while not failed and decodes.tasks and (
                        decodes.finals_waiting() >= MAX_FINALS_WAITING or i >= len(pcm)):
                    await asyncio.wait(decodes.tasks.values(),
                                       return_when=asyncio.FIRST_COMPLETED)
                    for final in ready:
                        yield final
                    ready.clear()
                if failed:
                    raise failed[0]
            for final in ready:
                yield final
        finally:
            decodes.cancel()

    async def _decode(self, request: DecodeRequest) -> Transcript | None:
        async with self.slots:
            return await self.engine.transcribe(request)


__all__ = ["MAX_FILES", "FileTranscriber", "RawFormat", "RequestError", "decode", "drain",
           "read_body"]
