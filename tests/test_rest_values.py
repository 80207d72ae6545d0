"""The REST endpoints' client values, refused cleanly: OpenAI's form fields and Deepgram's
query bounded as on the websocket, and every refusal in the endpoint's own error body
(OpenAI's `{"error": {...}}`, Deepgram's `{"err_code", "err_msg", "request_id"}`), also when
the HTTP request itself is malformed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from rtasr.server import Server

from .helpers import DATA

pytestmark = pytest.mark.e2e
WAV = (DATA / "tt-weasels.wav").read_bytes()


async def transcribe(server: Server, **fields: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(f"http://127.0.0.1:{server.port}/v1/audio/transcriptions",
                               files={"file": ("w.wav", WAV)},
                               data={"model": "whisper-1", **fields})


@pytest.mark.parametrize(("fields", "param"), [
    ({"prompt": "x" * 1_000_000}, "prompt"),
    ({"language": "english please"}, "language"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": "7"}, "temperature"),
    ({"response_format": "mp3"}, "response_format"),
    ({"timestamp_granularities[]": "syllable"}, "timestamp_granularities[]"),
    ({"stream": "perhaps"}, "stream"),
])
async def test_openai_form_fields_are_bounded(server: Server, fields: dict[str, str],
                                              param: str) -> None:
    answer = await transcribe(server, **fields)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error


async def test_an_honest_form_still_transcribes(server: Server) -> None:
    answer = await transcribe(server, prompt="weasels", language="en-US", temperature="0",
                              stream="false")
    assert answer.status_code == 200, answer.text
    assert "weasel" in answer.json()["text"].lower()


async def raw_post(server: Server, head: str) -> tuple[str, dict[str, Any]]:
    """A hand-written request (no body): the status line and the JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(20):
            answer = (await reader.read()).decode()
    finally:
        writer.close()
    status, _, body = answer.partition("\r\n\r\n")
    return status.split("\r\n")[0], json.loads(body)


@pytest.mark.parametrize("header", ["Transfer-Encoding: chunked", "Content-Length: lots",
                                    "Content-Length: -5"])
async def test_a_malformed_deepgram_request_gets_a_deepgram_error(server: Server,
                                                                  header: str) -> None:
    status, body = await raw_post(server, f"POST /v1/listen HTTP/1.1\r\nHost: x\r\n{header}"
                                          "\r\n\r\n")
    assert status.split()[1] in ("400", "411"), status
    assert set(body) >= {"err_code", "err_msg"} and "error" not in body, body


@pytest.mark.parametrize("header", ["Transfer-Encoding: chunked", "Content-Length: lots"])
async def test_a_malformed_openai_request_gets_an_openai_error(server: Server,
                                                               header: str) -> None:
    status, body = await raw_post(
        server, f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n")
    assert status.split()[1] in ("400", "411"), status
    assert body["error"]["type"] == "invalid_request_error", body


@pytest.mark.parametrize("query", ["sample_rate=1&encoding=linear16", "utterances=maybe",
                                   "language=english%20please", "keyterm=" + "x" * 600,
                                   "punctuate=" + "1" * 100])
async def test_deepgram_prerecorded_query_is_bounded(server: Server, query: str) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(f"http://127.0.0.1:{server.port}/v1/listen?{query}",
                                 content=WAV, headers={"Content-Type": "audio/wav"})
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) >= {"err_code", "err_msg", "request_id"}
