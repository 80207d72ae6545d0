"""Shared test helpers: real speech fixtures and a small websocket client."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr
from websockets.asyncio.client import connect

from rtasr import client
from rtasr.core.text import normalize
from rtasr.eval.wer import edit_distance
from rtasr.eval.yardstick import BEAM_SIZE

if TYPE_CHECKING:
    from rtasr.engine import Engine

DATA = Path(__file__).parent / "data"
TRANSCRIPTS: dict[str, str] = json.loads((DATA / "transcripts.json").read_text())


def word_errors(reference: str, hypothesis: str) -> int:
    """Words substituted, inserted or deleted in `hypothesis` against `reference`, after
    `rtasr.core.text.normalize` (case, punctuation, numbers spelled or written)."""
    return edit_distance(normalize(reference), normalize(hypothesis))


def assert_max_errors(reference: str, hypothesis: str, allowed: int) -> None:
    """`hypothesis` is `reference` but for at most `allowed` word errors."""
    errors = word_errors(reference, hypothesis)
    assert errors <= allowed, f"{errors} word errors, {allowed} allowed: {hypothesis!r}"


_WHOLE: dict[tuple[str, str, str | None], str] = {}


def decoded_whole(engine: Engine, name: str, language: str | None = None) -> str:
    """Fixture clip `name` decoded whole as the yardstick decodes an utterance (beam 5, the
    clip's own silence as margins), once per model and clip in a test run."""
    key = (engine.config.model, name, language)
    if key not in _WHOLE:
        _WHOLE[key] = engine.transcribe_whole(clip_at(name, 16000), language=language,
                                              beam_size=BEAM_SIZE)
    return _WHOLE[key]


def assert_close_to_yardstick(engine: Engine, text: str, names: list[str], *,
                              references: dict[str, str] | None = None,
                              language: str | None = None, slack_words: int | None = None
                              ) -> None:
    """`text`, streamed from clips `names` in order, has at most one word error per clip
    (or `slack_words`) more than the clips decoded whole (`decoded_whole`) have against
    their transcripts."""
    references = TRANSCRIPTS if references is None else references
    reference = " ".join(references[n] for n in names)
    whole = " ".join(decoded_whole(engine, n, language) for n in names)
    assert_max_errors(reference, text, word_errors(reference, whole)
                      + (len(names) if slack_words is None else slack_words))


def read_clip(name: str) -> tuple[np.ndarray, int]:
    """A fixture clip as float32 samples at its own rate (8 kHz for the Asterisk prompts)."""
    with wave.open(str(DATA / f"{name}.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return pcm.astype(np.float32) / 32768, w.getframerate()


def clip_at(name: str, rate: int) -> np.ndarray:
    audio, own = read_clip(name)
    return audio if own == rate else soxr.resample(audio, own, rate).astype(np.float32)


def trimmed(name: str, rate: int = 16000, threshold: float = 0.01) -> np.ndarray:
    """A fixture clip without its own leading and trailing silence (10 ms hops under
    `threshold`), so clips can be laid end to end with gaps of a chosen length."""
    audio = clip_at(name, rate)
    hop = rate // 100
    n = len(audio) // hop
    loud = np.flatnonzero(np.abs(audio[: n * hop]).reshape(n, hop).max(axis=1) >= threshold)
    return audio[loud[0] * hop : (loud[-1] + 1) * hop]


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


def encode(audio: np.ndarray, encoding: str = "pcm_s16le") -> bytes:
    if encoding == "pcm_f32le":
        return audio.astype("<f4").tobytes()
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def wav(audio: np.ndarray, rate: int = 16000) -> bytes:
    """`audio` as a mono 16-bit WAV file's bytes (an upload's body)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(encode(audio))
    return out.getvalue()


@dataclass
class StreamResult:
    messages: list[dict[str, Any]]
    close_code: int | None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def text(self) -> str:
        return " ".join(m["text"] for m in self.of("final"))


async def stream(url: str, audio: np.ndarray, *, rate: int = 16000,
                 encoding: str = "pcm_s16le", speed: float = 4.0, chunk_s: float = 0.1,
                 query: str = "", end: bool = True, timeout_s: float = 90) -> StreamResult:
    """Stream `audio` at `speed` x real time, send `end`, and collect every message
    (rtasr.client.stream, the one paced client)."""
    async with asyncio.timeout(timeout_s):
        rec = await client.stream(url, encode(audio, encoding), rate=rate, encoding=encoding,
                                  frame_s=chunk_s, speed=speed, query=query, end=end)
    assert rec.ready["type"] == "ready", rec.ready
    return StreamResult([r.msg for r in rec.messages], rec.close_code)


async def exchange(target: str, *frames: bytes | str, **kwargs: Any
                   ) -> tuple[list[dict[str, Any]], int | None]:
    """Send `frames`, then read until the server closes: its messages and its close code."""
    from websockets.exceptions import ConnectionClosed

    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(60), connect(target, max_size=None, **kwargs) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            while True:
                messages.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass
    return messages, ws.close_code


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait for `condition()` to hold: a closed socket leaves the server's count a few loop
    turns after the client sees the close."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def post_whole(port: int, path: str, body: bytes, headers: str = "") -> str:
    """POST `body` over a plain socket, all of it whatever the server answers first, then
    the response's status line and headers (a refused upload must not be reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: audio/wav"
                     f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        async with asyncio.timeout(20):
            writer.write(body)  # more than the socket buffers hold: sent while refused
            await writer.drain()
            return (await reader.readuntil(b"\r\n\r\n")).decode()
    finally:
        writer.close()


def wait_listening(proc: Any, scheme: str = "ws") -> int:
    """Read a `rtasr serve` subprocess's stderr (text or JSON log) until it listens; its port."""
    import re

    for line in proc.stderr:
        if m := re.search(rf"listening on {scheme}://127\.0\.0\.1:(\d+)/ws", line):
            return int(m.group(1))
    raise AssertionError("the server exited without listening")


def finals_sync(port: int, name: str) -> list[dict[str, Any]]:
    """Stream fixture clip `name` to ws://127.0.0.1:PORT/ws at once, `end`; the finals."""
    from websockets.sync.client import connect as connect_sync

    with connect_sync(f"ws://127.0.0.1:{port}/ws") as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        ws.send(encode(silence(0.3, 16000)) + encode(clip_at(name, 16000)))
        ws.send(json.dumps({"type": "end"}))
        return [m for m in map(json.loads, ws) if m["type"] == "final"]


class CountingModel:
    """A CTranslate2 Whisper model whose encode / generate / align / detect_language calls are
    counted (`calls`), and each generate call's beam size kept (`beams`); everything else
    passes through. Install it as `engine.decoder.model.model`."""

    COUNTED = ("encode", "generate", "align", "detect_language")

    def __init__(self, model: Any) -> None:
        self._model = model
        self.calls: dict[str, int] = dict.fromkeys(self.COUNTED, 0)
        self.beams: list[int] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._model, name)
        if name not in self.COUNTED:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "generate":
                self.beams.append(kwargs["beam_size"])
            return attr(*args, **kwargs)

        return counted


# Allison Smith (en) and June Wallack (fr) taking turns twice (tests/data/ATTRIBUTION.md)
TWO_READERS = [("allison", "agent-pass"), ("june", "fr/conf-full"),
               ("allison", "vm-nobodyavail"), ("june", "fr/vm-rec-name")]


def conversation(turns: list[tuple[str, str]], gaps_s: list[float], rate: int = 16000
                 ) -> tuple[np.ndarray, list[tuple[str, str, float, float]]]:
    """Fixture clips `turns` ((reader, clip) each, trimmed) laid end to end after 0.5 s of
    silence, `gaps_s` of silence after each in turn (cycled); the audio and each turn's
    reader, clip, start and end (s)."""
    parts, spans, at = [silence(0.5, rate)], [], 0.5
    for i, (reader, name) in enumerate(turns):
        clip = trimmed(name, rate)
        spans.append((reader, name, at, at + len(clip) / rate))
        gap = gaps_s[i % len(gaps_s)]
        parts += [clip, silence(gap, rate)]
        at += len(clip) / rate + gap
    return np.concatenate(parts), spans


def reader_of(spans: list[tuple[str, str, float, float]], start: float, end: float,
              slack_s: float = 0.3) -> str | None:
    """The reader whose turn holds the middle of [start, end] (give or take `slack_s`)."""
    middle = (start + end) / 2
    return next((r for r, _, s, e in spans if s - slack_s <= middle <= e + slack_s), None)
