"""Deepgram's official Python SDK, unchanged, pointed at rtasr's `/v1/listen`.

Nothing here speaks the protocol by hand: the SDK's own live client connects, streams, sends
Finalize and CloseStream and parses every reply into its own types, as it would against
Deepgram. The model is the real bundled one, the audio real recorded speech.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import (
    DATA,
    TRANSCRIPTS,
    TWO_READERS,
    clip_at,
    conversation,
    encode,
    reader_of,
    silence,
    wav,
)

pytest.importorskip("deepgram")
from deepgram import AsyncDeepgramClient, DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.core.events import EventType
from deepgram.environment import DeepgramClientEnvironment

MULTILINGUAL: dict[str, str] = json.loads((DATA / "transcripts-multilingual.json").read_text())


@pytest.fixture(scope="module")
async def keyed(engine: Engine) -> AsyncIterator[Server]:
    async with Server(Config(host="127.0.0.1", port=0, api_keys=("s3cret",)), engine) as srv:
        yield srv


def client(port: int, key: str = "any-key") -> DeepgramClient:
    env = DeepgramClientEnvironment(base=f"http://127.0.0.1:{port}",
                                    production=f"ws://127.0.0.1:{port}",
                                    agent=f"ws://127.0.0.1:{port}",
                                    agent_rest=f"http://127.0.0.1:{port}")
    return DeepgramClient(api_key=key, environment=env)


def mulaw(audio: np.ndarray) -> bytes:
    """G.711 mu-law encoding (what a phone bridge sends)."""
    x = np.clip(audio, -1, 1) * 32124
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x).astype(np.int32) + 0x84, 0x7FFF)
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def stream(port: int, data: bytes, *, rate: int = 16000, width: int = 2, speed: float = 2.0,
           finalize: bool = False, key: str = "any-key", **options: str) -> list[Any]:
    """Stream `data` through the SDK's live client; every message it parsed, in order."""
    messages: list[Any] = []
    got_final = threading.Event()

    def on_message(message: Any) -> None:
        messages.append(message)
        if getattr(message, "type", None) == "Results" and message.is_final:
            got_final.set()

    step = rate // 10 * width
    params = {"model": "nova-3", "sample_rate": str(rate), **options}
    with client(port, key).listen.v1.connect(**params) as socket:
        socket.on(EventType.MESSAGE, on_message)
        listener = threading.Thread(target=socket.start_listening, daemon=True)
        listener.start()
        t0 = time.monotonic()
        for i, off in enumerate(range(0, len(data), step)):
            socket.send_media(data[off : off + step])
            time.sleep(max(0.0, t0 + (i + 1) * 0.1 / speed - time.monotonic()))
        if finalize:
            socket.send_finalize()
            assert got_final.wait(30), "no final after Finalize"
        socket.send_close_stream()
        listener.join(60)
    return messages


def status_of(error: Exception) -> int:
    """The HTTP status of a refused handshake. The SDK wraps some in ApiError; with current
    websockets its sync client lets InvalidStatus through."""
    if isinstance(error, InvalidStatus):
        return error.response.status_code
    return int(error.status_code)  # type: ignore[attr-defined]


def of(messages: list[Any], kind: str) -> list[Any]:
    return [m for m in messages if getattr(m, "type", None) == kind]


def transcript(results: list[Any]) -> str:
    return " ".join(r.channel.alternatives[0].transcript for r in results if r.is_final)


async def test_sdk_live_client_gets_interim_and_final_results(server: Server) -> None:
    names = ["agent-alreadyon", "tt-weasels"]
    audio = np.concatenate([silence(0.5, 16000), clip_at(names[0], 16000), silence(1.6, 16000),
                            clip_at(names[1], 16000), silence(1.6, 16000)])
    data = encode(audio)
    messages = await _in_thread(stream, server.port, data, encoding="linear16",
                                interim_results="true", vad_events="true",
                                utterance_end_ms="1000", punctuate="true")
    results = of(messages, "Results")
    finals = [r for r in results if r.is_final]
    assert wer(" ".join(TRANSCRIPTS[n] for n in names), transcript(results)) <= 0.15
    # one speech_final per clip: the final at its pause (a long clip may also be cut before)
    assert sum(r.speech_final for r in finals) == 2 and finals[-1].speech_final
    assert results.index(finals[0]) > 0 and not results[0].is_final  # interim first
    words = finals[0].channel.alternatives[0].words
    assert words[0].punctuated_word[0].isupper() and words[0].word.islower()
    assert all(0 <= w.start <= w.end <= finals[0].start + finals[0].duration + 0.01
               for w in words)
    assert 0 < finals[0].channel.alternatives[0].confidence <= 1
    assert len(of(messages, "SpeechStarted")) == 2
    ends = of(messages, "UtteranceEnd")
    before = [m for m in messages[: messages.index(ends[0])] if m in finals] if ends else []
    last_words = before[-1].channel.alternatives[0].words if before else []
    assert ends and abs(ends[0].last_word_end - last_words[-1].end) < 0.01
    metadata = of(messages, "Metadata")
    assert messages[-1] is metadata[0]
    assert metadata[0].sha256 == hashlib.sha256(data).hexdigest()
    assert abs(metadata[0].duration - len(audio) / 16000) < 0.01


async def test_finalize_flushes_and_close_stream_ends(server: Server) -> None:
    audio = np.concatenate([silence(0.5, 8000), clip_at("tt-weasels", 8000)])  # no pause
    messages = await _in_thread(stream, server.port, mulaw(audio), rate=8000, width=1,
                                finalize=True, encoding="mulaw")
    results = of(messages, "Results")
    assert [r.is_final for r in results] == [True]  # interim_results defaults to false
    final = results[0]
    assert final.from_finalize is True and final.speech_final is False
    text = final.channel.alternatives[0].transcript
    assert wer(TRANSCRIPTS["tt-weasels"], text) <= 0.2
    assert text == text.lower() and "." not in text  # punctuate defaults to false
    assert of(messages, "Metadata")  # CloseStream: Metadata, then the close


async def test_wrong_or_missing_key_is_refused(keyed: Server) -> None:
    data = encode(np.concatenate([silence(0.3, 16000), clip_at("tt-weasels", 16000),
                                  silence(1.0, 16000)]))
    with pytest.raises((ApiError, InvalidStatus)) as refused:
        await _in_thread(stream, keyed.port, data, key="wrong", encoding="linear16")
    assert status_of(refused.value) == 401
    messages = await _in_thread(stream, keyed.port, data, key="s3cret", encoding="linear16")
    assert wer(TRANSCRIPTS["tt-weasels"], transcript(of(messages, "Results"))) <= 0.2


async def test_bad_parameters_are_refused_at_the_handshake(server: Server) -> None:
    for options in ({"channels": "2"}, {"encoding": "opus"}, {"sample_rate": "4000"}):
        with pytest.raises((ApiError, InvalidStatus)) as refused:
            await _in_thread(stream, server.port, b"", **options)
        assert status_of(refused.value) == 400, options


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_multi_detects_spanish_and_says_so_with_keyterms_given(base_server: Server) -> None:
    name = "es/conf-unlockednow"
    data = encode(np.concatenate([silence(0.3, 16000), clip_at(name, 16000),
                                  silence(1.2, 16000)]))
    messages = await _in_thread(stream, base_server.port, data, speed=4.0, language="multi",
                                keyterm="conferencia", keywords="desbloqueada:3",
                                punctuate="true")
    finals = [r for r in of(messages, "Results") if r.is_final]
    assert wer(MULTILINGUAL[name], transcript(finals)) <= 0.2, transcript(finals)
    assert [r.channel.alternatives[0].languages for r in finals] == [["es"]] * len(finals)
    assert {w.language for r in finals for w in r.channel.alternatives[0].words} == {"es"}


def check_speakers(words: list[Any], spans: list[tuple[str, str, float, float]]) -> None:
    """Every word has a speaker and a confidence; each reader's words one speaker, the two
    readers two; the English turns' words right."""
    assert words and all(isinstance(w.speaker, int) for w in words)
    assert all(0.0 <= w.speaker_confidence <= 1.0 for w in words)
    labels: dict[str | None, set[int]] = {}
    for w in words:
        labels.setdefault(reader_of(spans, w.start, w.end), set()).add(w.speaker)
    assert set(labels) == {"allison", "june"}, labels
    assert all(len(s) == 1 for s in labels.values()) and labels["allison"] != labels["june"]
    english = [n for r, n, _, _ in spans if r == "allison"]
    heard = " ".join(w.word for w in words if reader_of(spans, w.start, w.end) == "allison")
    assert wer(" ".join(TRANSCRIPTS[n] for n in english), heard) <= 0.2, heard


async def test_diarize_puts_each_readers_speaker_on_every_word(diarizing: Server) -> None:
    audio, spans = conversation(TWO_READERS, [0.8, 1.0])
    messages = await _in_thread(stream, diarizing.port, encode(audio), speed=4.0,
                                diarize="true", interim_results="true")
    results = of(messages, "Results")
    finals = [r for r in results if r.is_final]
    check_speakers([w for r in finals for w in r.channel.alternatives[0].words], spans)
    assert all(r.channel.alternatives[0].words == [] for r in results if not r.is_final)


async def test_diarize_on_a_prerecorded_file(diarizing: Server) -> None:
    audio, spans = conversation(TWO_READERS, [0.8, 1.0])
    base = f"http://127.0.0.1:{diarizing.port}"
    env = DeepgramClientEnvironment(base=base, production=base, agent=base, agent_rest=base)
    response = await AsyncDeepgramClient(api_key="k", environment=env).listen.v1.media.\
        transcribe_file(request=wav(audio), model="nova-3", diarize=True, utterances=True)
    words = response.results.channels[0].alternatives[0].words  # type: ignore[union-attr,index]
    check_speakers(words or [], spans)
    for utterance in response.results.utterances or []:  # type: ignore[union-attr]
        assert {w.speaker for w in utterance.words or []} == {utterance.speaker}


async def test_diarize_is_refused_by_a_server_without_diarize(server: Server) -> None:
    with pytest.raises((ApiError, InvalidStatus)) as refused:
        await _in_thread(stream, server.port, b"", diarize="true")
    assert status_of(refused.value) == 400
