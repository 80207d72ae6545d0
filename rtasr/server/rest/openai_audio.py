"""OpenAI's file transcription API: `POST /v1/audio/transcriptions` and `/v1/audio/translations`
(multipart, any format PyAV reads), and `GET /v1/models`.

The file is decoded and transcribed by uploads.py (the same `Session` as a live stream, ranked
below live finals); this module reads OpenAI's multipart form and renders OpenAI's answers
(with speakers, `diarized_json` and labelled text, srt and vtt: openai_speakers.py).
Uploads over `MAX_UPLOAD_BYTES` are refused with 413, files PyAV cannot decode with 400,
both with OpenAI's error object. docs/openai.md has the table.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import Field, File, create_form_parser

from ...core import limits, subtitles
from ...core.engine_api import ModelInfo
from ...core.protocol import Final, StreamParams
from ...dialects.openai_realtime import rest_error_body
from ...errors import ParameterError
from ..gateway import authorized
from ..http_post import PostRequest, Reply
from . import openai_speakers
from .openai_speakers import Speakers
from .uploads import (
    FileTranscriber,
    RequestError,
    body_chunks,
    check_length,
    decode,
    drain,
    duration_s,
)

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's own limit
FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("word", "segment")


def error_body(error: RequestError) -> dict[str, Any]:
    """OpenAI's error object."""
    return rest_error_body(error.status, str(error), param=error.param)


def models_body(model: ModelInfo) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model.name, "object": "model", "created": 0,
                                        "owned_by": "rtasr"}]}


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file: File | None = None


async def read_form(request: PostRequest) -> Form:
    """The multipart body, the file spooled to disk past 1 MiB. Raises RequestError."""
    check_length(request, MAX_UPLOAD_BYTES)
    form = Form()

    def on_field(f: Field) -> None:
        name = (f.field_name or b"").decode()
        form.fields.setdefault(name, []).append((f.value or b"").decode())

    def on_file(f: File) -> None:
        form.file = f

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise RequestError(400, "send multipart/form-data with a 'file' part")
    parser = create_form_parser({"Content-Type": content_type.encode()}, on_field, on_file,
                                {"MAX_MEMORY_FILE_SIZE": 1 << 20})
    async for chunk in body_chunks(request):
        parser.write(chunk)
    parser.finalize()
    if form.file is None:
        raise RequestError(400, "the 'file' part is missing", param="file")
    return form


@dataclass(frozen=True)
class FormRequest:
    """What one upload's form fields ask."""

    params: StreamParams
    format: str
    granularity: frozenset[str]
    stream: bool
    speakers: Speakers | None = None  # diarized_json or diarize=true (openai_speakers.py)


def parse_form(fields: dict[str, list[str]], task: str,
               default_language: str | None) -> FormRequest:
    """The form's fields, each checked and bounded (core/limits.py); unknown fields are
    accepted, as OpenAI's SDKs send some rtasr does not use. Raises ParameterError."""
    values = {k: v[-1] for k, v in fields.items()}
    fmt = limits.choice(values.get("response_format", "json"), "response_format", FORMATS)
    granularity = frozenset(
        limits.choice(g, "timestamp_granularities[]", GRANULARITIES)
        for g in fields.get("timestamp_granularities[]", [])) or frozenset({"segment"})
    if "temperature" in values:  # accepted: decoding is greedy
        limits.number(values["temperature"], "temperature", 0.0, 1.0)
    limits.text(values.get("model"), "model")
    language = limits.language(values.get("language")) or default_language
    params = StreamParams(language=language if task == "transcribe" else None,
                          task="translate" if task == "translate" else "transcribe",
                          prompt=limits.prompt(values.get("prompt")), interim_results=False)
    stream = limits.flag(values.get("stream"), "stream", False) and task == "transcribe"
    speakers = openai_speakers.parse(fields, fmt, task)
    if speakers is not None:
        params = dataclasses.replace(params, diarize=True)
    return FormRequest(params, fmt, granularity, stream, speakers)


class OpenAIRest:
    """The REST endpoints of one server."""

    def __init__(self, files: FileTranscriber, api_keys: tuple[str, ...]) -> None:
        self.files, self.api_keys = files, api_keys
        self.model: ModelInfo = files.model

    async def handle(self, request: PostRequest, reply: Reply) -> None:
        try:
            if not authorized(self.api_keys, {"Authorization": request.headers.get(
                    "authorization", "")}, request.query):
                raise RequestError(401, "a valid API key is required: 'Authorization: Bearer KEY'")
            task = {"/v1/audio/transcriptions": "transcribe",
                    "/v1/audio/translations": "translate"}.get(request.path)
            if task is None:
                raise RequestError(404, f"no POST endpoint {request.path}")
            with self.files.admitted():
                form = await read_form(request)
                await self._transcribe(form, task, reply)
        except RequestError as exc:
            if not reply.started:
                reply.json(exc.status, error_body(exc))
            await drain(request)  # a refused upload is read unkept: the client sees why

    async def _transcribe(self, form: Form, task: str, reply: Reply) -> None:
        try:
            request = parse_form(form.fields, task, self.model.language)
            self.model.check(request.params.language, request.params.task)
        except ParameterError as exc:
            raise RequestError(400, str(exc), param=exc.param or "language") from None
        assert form.file is not None
        speakers, known = request.speakers, []
        if speakers is not None:
            if self.files.embed is None:
                raise RequestError(400, "speakers (response_format=diarized_json, diarize=true)"
                                        " need a server started with --diarize",
                                   param="response_format")
            known = await openai_speakers.embed_references(speakers, self.files.embed)
        pcm = await asyncio.to_thread(decode, form.file.file_object)
        finals = self.files.finals(pcm, request.params, known)
        if request.stream:
            await self._stream(finals, reply, speakers)
            return
        collected = [f async for f in finals]
        if speakers is not None:
            for final in collected:
                openai_speakers.check_labelled(final)
        body, content_type = render(collected, request.format, set(request.granularity), task,
                                    duration_s(pcm), request.params.language, speakers)
        reply.send(200, body.encode(), content_type)

    async def _stream(self, finals: AsyncIterator[Final], reply: Reply,
                      speakers: Speakers | None) -> None:
        """`transcript.text.delta` per final, or with speakers per turn (with its
        `segment_id`, then its `transcript.text.segment`); `transcript.text.done` last."""
        reply.start_events()
        texts: list[str] = []
        try:
            async for final in finals:
                if speakers is None:
                    reply.event({"type": "transcript.text.delta",
                                 "delta": (" " if texts else "") + final.text.strip()})
                    texts.append(final.text.strip())
                    continue
                openai_speakers.check_labelled(final)
                for segment in openai_speakers.segments([final], speakers, len(texts)):
                    reply.event({"type": "transcript.text.delta", "segment_id": segment["id"],
                                 "delta": (" " if texts else "") + segment["text"]})
                    reply.event(segment)
                    texts.append(segment["text"])
        except RequestError as exc:  # a lost utterance: an error event, never `done`
            reply.event(error_body(exc))
            return
        reply.event({"type": "transcript.text.done", "text": " ".join(texts)})


def render(finals: list[Final], fmt: str, granularity: set[str], task: str, duration_s: float,
           language: str | None, speakers: Speakers | None = None) -> tuple[str, str]:
    """The response body in `fmt`, and its content type. With `speakers`, text, srt and vtt
    label each speaker's turn (core/subtitles.py) and diarized_json is OpenAI's."""
    import json

    text = " ".join(f.text.strip() for f in finals)
    if speakers is not None:
        if fmt == "diarized_json":
            return (json.dumps(openai_speakers.diarized_body(finals, speakers, duration_s),
                               ensure_ascii=False), "application/json")
        if fmt == "text":
            return subtitles.render(finals, "text", speakers.person), "text/plain; charset=utf-8"
    if fmt == "text":
        return text + "\n", "text/plain; charset=utf-8"
    label = subtitles.speaker_label if speakers is None else speakers.person
    if fmt == "srt":
        return subtitles.render(finals, "srt", label), "text/plain"
    if fmt == "vtt":
        return subtitles.render(finals, "vtt", label), "text/vtt"
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


__all__ = ["MAX_UPLOAD_BYTES", "OpenAIRest", "models_body"]
