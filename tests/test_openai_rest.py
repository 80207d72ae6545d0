"""OpenAI's official Python SDK, unchanged, against rtasr's `/v1/audio/transcriptions`:
json, verbose_json with words, srt and stream=true, on a real recorded clip (a WAV file, as
PyAV reads any), and the errors: an undecodable file (400) and an oversized one (413), and
speakers asked of a server without --diarize or beyond their bounds (400)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from rtasr.eval.wer import wer
from rtasr.server import Server
from rtasr.server.rest.openai_audio import MAX_UPLOAD_BYTES

from .helpers import DATA, TRANSCRIPTS, clip_at, post_whole, wav

pytest.importorskip("openai")
from openai import AsyncOpenAI, BadRequestError

pytestmark = pytest.mark.e2e
NAMES = ["tt-weasels", "vm-nobodyavail"]


def wav_file() -> bytes:
    return wav(np.concatenate([clip_at(n, 16000) for n in NAMES]))


def client(server: Server) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="k", base_url=f"http://127.0.0.1:{server.port}/v1",
                       max_retries=0)


EXPECTED = " ".join(TRANSCRIPTS[n] for n in NAMES)


async def test_json_and_text(server: Server) -> None:
    result = await client(server).audio.transcriptions.create(
        model="whisper-1", file=("both.wav", wav_file()), language="en")
    assert wer(EXPECTED, result.text) < 0.2, result.text


async def test_verbose_json_with_words(server: Server) -> None:
    result = await client(server).audio.transcriptions.create(
        model="whisper-1", file=("both.wav", wav_file()), response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
    assert wer(EXPECTED, result.text) < 0.2, result.text
    assert result.words and result.segments
    assert wer(EXPECTED, " ".join(w.word for w in result.words)) < 0.2
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and result.words[-1].end <= result.duration + 0.1


async def test_srt(server: Server) -> None:
    srt = await client(server).audio.transcriptions.create(
        model="whisper-1", file=("weasels.wav", (DATA / "tt-weasels.wav").read_bytes()),
        response_format="srt")
    assert isinstance(srt, str) and srt.startswith("1\n00:00:")
    assert wer(TRANSCRIPTS["tt-weasels"], srt.split("\n", 2)[2]) < 0.2, srt


async def test_stream_deltas_then_done(server: Server) -> None:
    stream = await client(server).audio.transcriptions.create(
        model="whisper-1", file=("both.wav", wav_file()), stream=True)
    events = [e async for e in stream]
    assert [e.type for e in events][-1] == "transcript.text.done"
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2 and "".join(deltas) == events[-1].text
    assert wer(EXPECTED, events[-1].text) < 0.2


async def test_undecodable_file_is_400(server: Server) -> None:
    with pytest.raises(BadRequestError) as refused:
        await client(server).audio.transcriptions.create(
            model="whisper-1", file=("notes.wav", b"this is not audio" * 100))
    assert refused.value.status_code == 400
    assert "decoded" in refused.value.message


async def test_oversized_upload_is_413(server: Server) -> None:
    """Refused from its Content-Length, before the body is read."""
    body = b"x" * (MAX_UPLOAD_BYTES + 1)
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"http://127.0.0.1:{server.port}/v1/audio/transcriptions",
                                 files={"file": ("big.wav", body)}, data={"model": "m"})
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_models_lists_the_model(server: Server) -> None:
    models = await client(server).models.list()
    assert [m.id for m in models.data] == [server.engine.spec.name]


async def test_a_refusal_before_the_body_is_read_still_reaches_the_client(
        server: Server) -> None:
    """A wrong path is refused from the request line; the 8 MB upload behind it is read and
    discarded, so the client finishes sending and reads the 404 instead of a reset."""
    head = await post_whole(server.port, "/v1/audio/nope", bytes(8 * 1024 * 1024))
    assert head.startswith("HTTP/1.1 404"), head


async def test_diarized_json_needs_a_server_with_diarize(server: Server) -> None:
    with pytest.raises(BadRequestError) as refused:
        await client(server).audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize", file=("w.wav", wav_file()),
            response_format="diarized_json")
    assert refused.value.status_code == 400
    assert "--diarize" in refused.value.message
    assert refused.value.param == "response_format"


async def test_known_speakers_are_bounded_as_the_sdk_sends_them(server: Server) -> None:
    """Checked before anything else (here, a server without --diarize): five names and five
    clips, sent as the SDK sends arrays (`known_speaker_names[]`), are one too many."""
    clip = "data:audio/wav;base64," + base64.b64encode(wav(np.zeros(32000))).decode()
    with pytest.raises(BadRequestError) as refused:
        await client(server).audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize", file=("w.wav", wav_file()),
            response_format="diarized_json", known_speaker_names=list("abcde"),
            known_speaker_references=[clip] * 5)
    assert "at most 4 known speakers" in refused.value.message
    assert refused.value.param == "known_speaker_references[]"
