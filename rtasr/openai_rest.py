"""OpenAI's file transcription API: `POST /v1/audio/transcriptions` and `/v1/audio/translations`
(multipart, any format PyAV reads), and `GET /v1/models`.

A file runs through the same `Session` as a live stream (its segmentation, its finals), as
a session sending faster than real time: its decodes rank below every live session's
finals (scheduler.py), and at most `workers - 1` file decodes run at once, so one worker is
always free for a live final. Uploads over `MAX_UPLOAD_BYTES` are refused with 413, files
PyAV cannot decode with 400, both with OpenAI's error object. docs/openai.md has the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import Field, File, create_form_parser

from .config import SAMPLE_RATE_HZ, Config
from .connection import EngineLike
from .decoding import ModelInfo
from .errors import ParameterError, RtasrError
from .gateway import authorized
from .http_front import HttpRequest, Reply
from .protocol import Final, StreamParams
from .session import Cancel, DecodeJob, Session

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's own limit
MAX_AUDIO_S = 3600.0  # decoded audio held in memory: 115 MB of 16 kHz s16 at most
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
CHUNK = SAMPLE_RATE_HZ * 2  # 1 s of s16le per feed


class ApiError(RtasrError):
    def __init__(self, status: int, message: str, code: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param = status, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param,
                          "code": None}}


def models_body(model: ModelInfo) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model.name, "object": "model", "created": 0,
                                        "owned_by": "rtasr"}]}


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file: File | None = None


async def read_form(request: HttpRequest) -> Form:
    """The multipart body, the file spooled to disk past 1 MiB. Raises ApiError."""
    if request.length > MAX_UPLOAD_BYTES:
        raise ApiError(413, f"the upload is {request.length} bytes; at most "
                            f"{MAX_UPLOAD_BYTES} bytes are accepted")
    form = Form()

    def on_field(f: Field) -> None:
        name = (f.field_name or b"").decode()
        form.fields.setdefault(name, []).append((f.value or b"").decode())

    def on_file(f: File) -> None:
        form.file = f

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(400, "send multipart/form-data with a 'file' part")
    parser = create_form_parser({"Content-Type": content_type.encode()}, on_field, on_file,
                                {"MAX_MEMORY_FILE_SIZE": 1 << 20})
    left = request.length
    while left > 0:
        async with asyncio.timeout(30):
            chunk = await request.reader.read(min(left, 1 << 16))
        if not chunk:
            raise ApiError(400, "the request body ended early")
        left -= len(chunk)
        parser.write(chunk)
    parser.finalize()
    if form.file is None:
        raise ApiError(400, "the 'file' part is missing", param="file")
    return form


def decode(file: File) -> bytes:
    """The upload's audio as 16 kHz mono s16le. Raises ApiError (400)."""
    import av

    source = file.file_object
    source.seek(0)
    limit = int(MAX_AUDIO_S * SAMPLE_RATE_HZ * 2)
    out = io.BytesIO()
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                raise ApiError(400, "the file has no audio stream", param="file")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
            for frame in [*container.decode(audio=0), None]:
                for f in resampler.resample(frame):
                    out.write(f.to_ndarray().tobytes())
                if out.tell() > limit:
                    raise ApiError(413, f"the audio is longer than {MAX_AUDIO_S:g} s")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the file is not audio that can be decoded ({exc})",
                       param="file") from None
    return out.getvalue()


class OpenAIRest:
    """The REST endpoints of one server."""

    def __init__(self, config: Config, engine: EngineLike, model: ModelInfo,
                 workers: int) -> None:
        self.config, self.engine, self.model = config, engine, model
        self.slots = asyncio.Semaphore(max(1, workers - 1))  # file decodes in flight

    async def handle(self, request: HttpRequest, reply: Reply) -> None:
        try:
            if not authorized(self.config.api_keys, {"Authorization": request.headers.get(
                    "authorization", "")}, request.query):
                raise ApiError(401, "a valid API key is required: 'Authorization: Bearer KEY'")
            task = {"/v1/audio/transcriptions": "transcribe",
                    "/v1/audio/translations": "translate"}.get(request.path)
            if task is None:
                raise ApiError(404, f"no POST endpoint {request.path}")
            form = await read_form(request)
            await self._transcribe(form, task, reply)
        except ApiError as exc:
            if not reply.started:
                reply.json(exc.status, exc.body())
            if exc.status == 413:  # read the rest unkept, so the client sees the answer
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        while await request.reader.read(1 << 16):
                            pass

    async def _transcribe(self, form: Form, task: str, reply: Reply) -> None:
        values = {k: v[-1] for k, v in form.fields.items()}
        fmt = values.get("response_format", "json")
        if fmt not in FORMATS:
            raise ApiError(400, f"response_format must be one of {', '.join(FORMATS)}",
                           param="response_format")
        language = values.get("language", "").split("-")[0].lower() or self.model.language
        params = StreamParams(language=language if task == "transcribe" else None,
                              task="translate" if task == "translate" else "transcribe",
                              prompt=values.get("prompt", "").strip() or None,
                              interim_results=False)
        try:
            self.model.check(params.language, params.task)
        except ParameterError as exc:
            raise ApiError(400, str(exc), param="language") from None
        assert form.file is not None
        pcm = await asyncio.to_thread(decode, form.file)
        finals = self.finals(pcm, params)
        if values.get("stream", "").lower() == "true" and task == "transcribe":
            await self._stream(finals, reply)
            return
        collected = [f async for f in finals]
        granularity = set(form.fields.get("timestamp_granularities[]", [])) or {"segment"}
        body, content_type = render(collected, fmt, granularity, task,
                                    len(pcm) / 2 / SAMPLE_RATE_HZ, params.language)
        reply.send(200, body.encode(), content_type)

    async def _stream(self, finals: AsyncIterator[Final], reply: Reply) -> None:
        reply.start_events()
        texts: list[str] = []
        async for final in finals:
            delta = (" " if texts else "") + final.text.strip()
            texts.append(final.text.strip())
            reply.event({"type": "transcript.text.delta", "delta": delta})
        reply.event({"type": "transcript.text.done", "text": " ".join(texts)})

    async def finals(self, pcm: bytes, params: StreamParams) -> AsyncIterator[Final]:
        """The file's finals in order, through a Session that is not real time."""
        config = self.config.replace(beam_size=self.model.beam_size,
                                     context_chars=self.model.context_chars)
        session = Session(config, params, "file", params.language)
        session.realtime = False
        jobs: dict[DecodeJob, asyncio.Task[Any]] = {}
        ready: list[Final] = []

        def dispatch(actions: list[Any]) -> None:
            for action in actions:
                if isinstance(action, DecodeJob):
                    jobs[action] = asyncio.create_task(self._decode(action))
                elif isinstance(action, Cancel):
                    task = jobs.pop(action.job, None)
                    if task is not None:
                        task.cancel()
                elif isinstance(action, Final):
                    ready.append(action)

        try:
            for i in range(0, len(pcm) + CHUNK, CHUNK):
                dispatch(session.feed(pcm[i : i + CHUNK]) if i < len(pcm) else session.end())
                while jobs and (len(jobs) > 2 or i >= len(pcm)):
                    done, _ = await asyncio.wait(jobs.values(),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    for job, task in list(jobs.items()):
                        if task in done:
                            del jobs[job]
                            dispatch(session.on_result(job, task.result()))
                    for final in ready:
                        yield final
                    ready.clear()
            for final in ready:
                yield final
        finally:
            for task in jobs.values():
                task.cancel()

    async def _decode(self, job: DecodeJob) -> Any:
        async with self.slots:
            return await self.engine.transcribe(job.request)


def render(finals: list[Final], fmt: str, granularity: set[str], task: str, duration_s: float,
           language: str | None) -> tuple[str, str]:
    """The response body in `fmt`, and its content type."""
    import json

    text = " ".join(f.text.strip() for f in finals)
    if fmt == "text":
        return text + "\n", "text/plain; charset=utf-8"
    if fmt in ("srt", "vtt"):
        sep = "," if fmt == "srt" else "."
        cues = [f"{_stamp(f.start, sep)} --> {_stamp(f.end, sep)}\n{f.text.strip()}\n"
                for f in finals]
        if fmt == "srt":
            return "\n".join(f"{i}\n{c}" for i, c in enumerate(cues, 1)), "text/plain"
        return "WEBVTT\n\n" + "\n".join(cues), "text/vtt"
    if fmt == "json":
        return json.dumps({"text": text}), "application/json"
    body: dict[str, Any] = {
        "task": task, "language": _language_name(finals, language), "duration": duration_s,
        "text": text}
    if "segment" in granularity:
        body["segments"] = [{"id": i, "seek": 0, "start": f.start, "end": f.end,
                             "text": f.text.strip(), "tokens": [], "temperature": 0.0,
                             "avg_logprob": 0.0, "compression_ratio": 1.0,
                             "no_speech_prob": 0.0} for i, f in enumerate(finals)]
    if "word" in granularity:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                         for f in finals for w in f.words]
    return json.dumps(body, ensure_ascii=False), "application/json"


def _language_name(finals: list[Final], language: str | None) -> str:
    return next((f.language for f in finals if f.language), language or "en")


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    hours, minutes, secs = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms % 1000:03d}"


__all__ = ["MAX_UPLOAD_BYTES", "OpenAIRest", "models_body"]
