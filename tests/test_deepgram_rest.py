"""Deepgram's official Python SDK, unchanged, against rtasr's prerecorded `POST /v1/listen`:
a real recorded file (a WAV with a pause between two clips) transcribed with utterances, and
the refusals: a remote URL (rtasr never fetches), undecodable bytes, a wrong key, an
oversized upload."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, post_whole, silence, until, wav

pytest.importorskip("deepgram")
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.types.listen_v1response import ListenV1Response

pytestmark = pytest.mark.e2e
NAMES = ["tt-weasels", "cannot-complete-as-dialed"]


@pytest.fixture(scope="module")
async def keyed(engine: Engine) -> AsyncIterator[Server]:
    async with Server(Config(host="127.0.0.1", port=0, api_keys=("s3cret",)), engine) as srv:
        yield srv


def client(server: Server, key: str = "any-key") -> AsyncDeepgramClient:
    base = f"http://127.0.0.1:{server.port}"
    env = DeepgramClientEnvironment(base=base, production=base.replace("http", "ws"),
                                    agent=base.replace("http", "ws"), agent_rest=base)
    return AsyncDeepgramClient(api_key=key, environment=env)


def two_clips() -> bytes:
    return wav(np.concatenate([silence(0.3, 16000), clip_at(NAMES[0], 16000),
                               silence(1.5, 16000), clip_at(NAMES[1], 16000),
                               silence(0.5, 16000)]))


async def test_sdk_transcribes_a_file_into_utterances(server: Server) -> None:
    data = two_clips()
    response = await client(server).listen.v1.media.transcribe_file(
        request=data, model="nova-3", language="en", punctuate=True, smart_format=True,
        utterances=True)
    assert isinstance(response, ListenV1Response)
    meta = response.metadata
    assert meta.sha256 == hashlib.sha256(data).hexdigest() and meta.channels == 1
    assert abs(meta.duration - (len(data) - 44) / 2 / 16000) < 0.01
    assert meta.models and set(meta.model_info) == set(meta.models)
    assert meta.created.tzinfo is not None
    alternative = response.results.channels[0].alternatives[0]  # type: ignore[index]
    expected = " ".join(TRANSCRIPTS[n] for n in NAMES)
    assert wer(expected, alternative.transcript) < 0.2, alternative.transcript
    assert alternative.transcript[0].isupper()  # punctuate=true
    words = alternative.words or []
    assert wer(expected, " ".join(w.word for w in words)) < 0.2
    assert all(w.word == w.word.lower() and "," not in w.word and "." not in w.word
               for w in words)
    assert 0 < alternative.confidence <= 1
    utterances = response.results.utterances or []
    assert len(utterances) == 2, [u.transcript for u in utterances]
    for name, utterance in zip(NAMES, utterances, strict=True):
        assert wer(TRANSCRIPTS[name], utterance.transcript) < 0.2, utterance.transcript
        uwords = utterance.words or []
        assert wer(TRANSCRIPTS[name], " ".join(w.punctuated_word for w in uwords)) < 0.2
        assert utterance.start <= uwords[0].start and uwords[-1].end <= utterance.end + 0.01
        assert utterance.channel == 0 and utterance.id and 0 < utterance.confidence <= 1
    assert utterances[0].end < utterances[1].start


async def test_without_utterances_or_punctuate(server: Server) -> None:
    response = await client(server).listen.v1.media.transcribe_file(
        request=wav(clip_at(NAMES[0], 16000)), model="nova-3")
    assert isinstance(response, ListenV1Response)
    assert response.results.utterances is None
    text = response.results.channels[0].alternatives[0].transcript  # type: ignore[index]
    assert wer(TRANSCRIPTS[NAMES[0]], text) < 0.2 and text == text.lower()


async def test_a_url_is_refused_not_fetched(server: Server) -> None:
    with pytest.raises(ApiError) as refused:
        await client(server).listen.v1.media.transcribe_url(url="http://127.0.0.1:9/a.wav")
    assert refused.value.status_code == 400
    body = refused.value.body
    assert "does not fetch" in body["err_msg"] and body["err_code"] and body["request_id"]


async def test_an_empty_body_is_400_not_an_empty_transcript(server: Server) -> None:
    with pytest.raises(ApiError) as refused:
        await client(server).listen.v1.media.transcribe_file(
            request=b"", request_options={"additional_query_parameters": {
                "encoding": "linear16", "sample_rate": 16000}})
    assert refused.value.status_code == 400
    assert "empty" in refused.value.body["err_msg"]


async def test_garbage_bytes_are_400(server: Server) -> None:
    with pytest.raises(ApiError) as refused:
        await client(server).listen.v1.media.transcribe_file(request=b"not audio" * 200)
    assert refused.value.status_code == 400
    assert "decoded" in refused.value.body["err_msg"]


async def test_wrong_key_is_401_and_the_right_one_works(keyed: Server) -> None:
    data = wav(clip_at(NAMES[0], 16000))
    with pytest.raises(ApiError) as refused:
        await client(keyed, "wrong").listen.v1.media.transcribe_file(request=data)
    assert refused.value.status_code == 401
    assert set(refused.value.body) == {"err_code", "err_msg", "request_id"}
    response = await client(keyed, "s3cret").listen.v1.media.transcribe_file(request=data)
    assert isinstance(response, ListenV1Response)


async def test_a_refusal_before_the_body_is_read_still_reaches_the_client(
        keyed: Server) -> None:
    """A 401 is decided from the headers; the upload (8 MB here) is read and discarded, so the
    client finishes sending and reads the answer instead of a connection reset."""
    head = await post_whole(keyed.port, "/v1/listen", b"RIFF" + bytes(8 * 1024 * 1024),
                            "Authorization: Token wrong\r\n")
    assert head.startswith("HTTP/1.1 401"), head


async def test_oversized_upload_is_413_from_its_length(server: Server) -> None:
    """Refused from its Content-Length, before the body is read."""
    from rtasr.server.rest.deepgram_prerecorded import MAX_UPLOAD_BYTES

    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"POST /v1/listen HTTP/1.1\r\nHost: x\r\nAuthorization: Token k\r\n"
                     f"Content-Type: audio/wav\r\nContent-Length: {MAX_UPLOAD_BYTES + 1}\r\n"
                     "\r\nRIFF".encode())
        async with asyncio.timeout(10):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = int(head.lower().split("content-length:")[1].split()[0])
            body = json.loads(await reader.readexactly(length))
        assert head.startswith("HTTP/1.1 413"), head
        assert body["err_code"] == "PAYLOAD_TOO_LARGE" and str(MAX_UPLOAD_BYTES) in body["err_msg"]
    finally:
        writer.close()


async def test_headerless_mulaw_with_its_encoding(server: Server) -> None:
    """encoding + sample_rate describe raw audio (a phone bridge's G.711), as on the live
    endpoint (the SDK has no sample_rate argument here: it goes as an extra query parameter);
    a WAV sent with encoding=linear16 is still read from its header."""
    from .test_deepgram import mulaw

    dg = client(server).listen.v1.media
    rate_8k: Any = {"additional_query_parameters": {"sample_rate": 8000}}
    response = await dg.transcribe_file(request=mulaw(clip_at(NAMES[0], 8000)),
                                        encoding="mulaw", request_options=rate_8k)
    assert isinstance(response, ListenV1Response)
    text = response.results.channels[0].alternatives[0].transcript  # type: ignore[index]
    assert wer(TRANSCRIPTS[NAMES[0]], text) < 0.2, text
    response = await dg.transcribe_file(request=wav(clip_at(NAMES[1], 16000)),
                                        encoding="linear16", request_options=rate_8k)
    assert isinstance(response, ListenV1Response)
    text = response.results.channels[0].alternatives[0].transcript  # type: ignore[index]
    assert wer(TRANSCRIPTS[NAMES[1]], text) < 0.2, text


def test_options_refused_and_detected_languages_said() -> None:
    """Sans I/O: what `parse` refuses, and the response's language fields with detection."""
    from rtasr.core.protocol import Final, WireWord
    from rtasr.errors import ParameterError
    from rtasr.server.rest.deepgram_prerecorded import parse, response_body

    for query in ("callback=http://example.com/hook", "multichannel=true", "utterances=maybe"):
        with pytest.raises(ParameterError):
            parse(query, "en")
    settings = parse("detect_language=true&utterances=true&punctuate=true", "en")
    assert settings.options.language is None and settings.utterances and settings.raw is None
    finals = [Final(utterance=i, start=i, end=i + 1.0, text=f" {text}", language=lang,
                    words=[WireWord(word=w, start=i, end=i + 0.5, probability=0.5)
                           for w in text.split()])
              for i, (text, lang) in enumerate([("Hola, amigos míos.", "es"), ("Hi.", "en")])]
    body = response_body(finals, settings, {"request_id": "r", "sha256": "s", "duration": 2.0},
                         "base")
    channel = body["results"]["channels"][0]
    assert channel["detected_language"] == "es"
    assert channel["alternatives"][0]["languages"] == ["es", "en"]
    assert channel["alternatives"][0]["transcript"] == "Hola, amigos míos. Hi."
    assert [u["languages"] for u in body["results"]["utterances"]] == [["es"], ["en"]]
    assert [w["word"] for w in channel["alternatives"][0]["words"]] == ["hola", "amigos", "míos",
                                                                        "hi"]
    assert body["metadata"]["models"] == list(body["metadata"]["model_info"])


async def test_files_beyond_the_bound_are_429_until_one_is_done(server: Server) -> None:
    """At most MAX_FILES uploads are read, decoded and transcribed at once (each may hold
    256 MiB on disk and an hour of audio in memory), across both REST APIs: the next is
    refused with 429, and admitted again once one is done."""
    from rtasr.server.rest.uploads import MAX_FILES

    files = server.files
    assert files is not None
    held = []
    try:
        for i in range(MAX_FILES):  # uploads that stall after their first bytes
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            path, kind = ("/v1/listen", "audio/wav") if i % 2 else (
                "/v1/audio/transcriptions", "multipart/form-data; boundary=b")
            writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
                         "Content-Length: 1000000\r\n\r\n--b\r\n".encode())
            held.append((reader, writer))
        await until(lambda: files.in_flight == MAX_FILES)
        with pytest.raises(ApiError) as refused:
            await client(server).listen.v1.media.transcribe_file(request=wav(clip_at(
                NAMES[0], 16000)))
        assert refused.value.status_code == 429
        assert refused.value.body["err_code"] == "TOO_MANY_REQUESTS"
    finally:
        for _, writer in held:
            writer.close()
    await until(lambda: files.in_flight == 0)
    response = await client(server).listen.v1.media.transcribe_file(request=wav(clip_at(
        NAMES[0], 16000)))
    text = response.results.channels[0].alternatives[0].transcript  # type: ignore[index]
    assert wer(TRANSCRIPTS[NAMES[0]], text) < 0.2
