"""Deepgram's prerecorded API: `POST /v1/listen` with the audio file as the body.

Deepgram's SDKs (`listen.v1.media.transcribe_file`) switch to rtasr by changing their base
URL. The body is decoded and transcribed by uploads.py (the same `Session` as a live stream,
ranked below live finals); this module reads Deepgram's query (the same `Options` as the live
endpoint, deepgram.py) and answers with Deepgram's response: `metadata`, one channel's
alternative with its words, and `utterances` (one per final) when asked. rtasr never fetches
anything: Deepgram's remote-URL form (`{"url": ...}`) is refused. What is honoured and what
is only accepted is in docs/deepgram.md.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any

from ...core.protocol import Final, StreamParams
from ...dialects.deepgram import (
    ENCODINGS,
    Options,
    confidence,
    created_now,
    flag_option,
    int_option,
    model_info,
    model_uuid,
    rest_error_body,
    transcript,
    words_json,
)
from ...errors import ParameterError
from ..gateway import authorized
from ..http_post import PostRequest, Reply
from .uploads import FileTranscriber, RawFormat, RequestError, decode, drain, duration_s, read_body

MAX_UPLOAD_BYTES = 256 * 1024 * 1024  # an hour of 16 kHz mono WAV fits; spooled to disk
JSON_PEEK_BYTES = 64 * 1024  # a body this short that starts with "{" is read as JSON
_DEMUXERS = {"pcm_s16le": "s16le", "mulaw": "mulaw", "alaw": "alaw"}


@dataclass(frozen=True)
class PrerecordedSettings:
    """One prerecorded request's settings."""

    options: Options
    raw: RawFormat | None  # headerless audio (`encoding`); None: a container PyAV detects
    utterances: bool


def error_body(error: RequestError, request_id: str) -> dict[str, Any]:
    """Deepgram's error object."""
    return rest_error_body(error.status, str(error), request_id)


def parse(query: str, default_language: str | None) -> PrerecordedSettings:
    """The query's settings. Raises ParameterError for what rtasr cannot do as asked."""
    options = Options.parse(query, default_language)
    values = options.values
    if values.get("callback"):
        raise ParameterError("rtasr does not call back: leave callback unset and read the "
                             "transcript from this response")
    if flag_option(values, "multichannel", False):
        raise ParameterError("multichannel=true: rtasr mixes every channel into one; leave "
                             "multichannel unset")
    raw = None
    encoding = values.get("encoding", "").lower()
    if encoding in ENCODINGS:  # other encodings name a container's codec: PyAV detects it
        rate = int_option(values, "sample_rate", 16000, 8000, 48000)
        assert rate is not None
        raw = RawFormat(_DEMUXERS[ENCODINGS[encoding]], rate)
    return PrerecordedSettings(options, raw, flag_option(values, "utterances", False))


def refuse_json(body: IO[bytes], content_type: str, length: int) -> None:
    """Refuse (400) a JSON body: Deepgram's `{"url": ...}` form, which rtasr never fetches."""
    head = body.read(1)
    body.seek(0)
    if content_type != "application/json" and not (head == b"{" and length <= JSON_PEEK_BYTES):
        return
    try:
        data = json.loads(body.read(JSON_PEEK_BYTES + 1))
    except (ValueError, UnicodeDecodeError):
        data = None
    body.seek(0)
    if isinstance(data, dict) and "url" in data:
        raise RequestError(400, "rtasr does not fetch URLs: send the audio file's bytes as the "
                                "request body (transcribe_file), not {\"url\": ...}")
    if content_type == "application/json":
        raise RequestError(400, "send the audio file's bytes as the request body, not JSON")


class DeepgramRest:
    """`POST /v1/listen` of one server."""

    def __init__(self, files: FileTranscriber, api_keys: tuple[str, ...]) -> None:
        self.files, self.api_keys = files, api_keys

    async def handle(self, request: PostRequest, reply: Reply) -> None:
        request_id = str(uuid.uuid4())
        headers = (("dg-request-id", request_id),)
        try:
            if not authorized(self.api_keys, {"Authorization": request.headers.get(
                    "authorization", "")}, request.query):
                raise RequestError(401, "a valid API key is required: 'Authorization: Token "
                                        "KEY'")
            with self.files.admitted():
                body = await self._transcribe(request, request_id)
            reply.send(200, json.dumps(body, ensure_ascii=False).encode(), "application/json",
                       headers)
        except RequestError as exc:
            if not reply.started:
                data = json.dumps(error_body(exc, request_id), ensure_ascii=False).encode()
                reply.send(exc.status, data, "application/json",
                           (*headers, ("dg-error", " ".join(str(exc).split()))))
            await drain(request)  # a refused upload is read unkept: the client sees why

    async def _transcribe(self, request: PostRequest, request_id: str) -> dict[str, Any]:
        model = self.files.model
        try:
            settings = parse(request.query, model.language)
            params = StreamParams(language=settings.options.language,
                                  prompt=settings.options.prompt, interim_results=False,
                                  diarize=settings.options.diarize)
            model.check(params.language, params.task)
            if params.diarize and self.files.embed is None:
                raise ParameterError("diarize=true needs a server started with --diarize")
        except ParameterError as exc:
            raise RequestError(400, str(exc)) from None
        body, sha256 = await read_body(request, MAX_UPLOAD_BYTES)
        with body:
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            refuse_json(body, content_type.lower(), request.length)
            raw = settings.raw
            if raw is not None and body.read(4) == b"RIFF":  # a WAV header says better
                raw = None
            pcm = await asyncio.to_thread(decode, body, raw)
        finals = [f async for f in self.files.finals(pcm, params) if f.text.strip()]
        meta = {"request_id": request_id, "sha256": sha256, "duration": duration_s(pcm)}
        return response_body(finals, settings, meta, model.name)


def response_body(finals: list[Final], settings: PrerecordedSettings, meta: dict[str, Any],
                  model_name: str) -> dict[str, Any]:
    """Deepgram's prerecorded response for the file's finals."""
    options = settings.options
    model_id = model_uuid(model_name)
    per_final = [(f, words_json(f.words, f.language if options.detect else None),
                  transcript(f.text.strip(), options.punctuate)) for f in finals]
    words = [w for _, ws, _ in per_final for w in ws]
    alternative: dict[str, Any] = {
        "transcript": " ".join(text for _, _, text in per_final if text),
        "confidence": confidence(words), "words": words}
    channel: dict[str, Any] = {"alternatives": [alternative]}
    if options.detect:
        heard: Counter[str] = Counter()
        for f in finals:
            if f.language:
                heard[f.language] += len(f.words) or 1
        if heard:
            alternative["languages"] = [lang for lang, _ in heard.most_common()]
            channel["detected_language"] = alternative["languages"][0]
    results: dict[str, Any] = {"channels": [channel]}
    if settings.utterances:
        results["utterances"] = [
            {"start": f.start, "end": f.end, "confidence": confidence(ws), "channel": 0,
             "transcript": text, "words": ws, "id": str(uuid.uuid4()),
             **({"languages": [f.language]} if options.detect and f.language else {}),
             **({"speaker": f.speaker} if f.speaker is not None else {})}
            for f, ws, text in per_final]
    metadata = {"transaction_key": "deprecated", **meta, "created": created_now(),
                "channels": 1, "models": [model_id],
                "model_info": {model_id: model_info(model_name)}}
    return {"metadata": metadata, "results": results}


__all__ = ["MAX_UPLOAD_BYTES", "DeepgramRest"]
