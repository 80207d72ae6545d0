"""End to end: the real server, the real model, real speech over real websockets."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request

import numpy as np
import pytest
from websockets.asyncio.client import connect

from rtasr.eval.wer import wer
from rtasr.server import Server

from . import helpers
from .helpers import TRANSCRIPTS, clip_at, read_clip, silence, stream, until

pytestmark = pytest.mark.e2e


def with_pauses(names: list[str], rate: int, pause_s: float = 1.0) -> np.ndarray:
    parts = [silence(0.5, rate)]
    for name in names:
        parts += [clip_at(name, rate), silence(pause_s, rate)]
    return np.concatenate(parts)


async def test_real_time_stream_gives_partials_then_exact_finals(server: Server) -> None:
    names = ["agent-alreadyon", "cannot-complete-as-dialed"]
    result = await stream(server.url, with_pauses(names, 8000), rate=8000, speed=1.0)
    finals = result.of("final")
    # one final per clip at its pause; the 5.5 s clip may also be cut before it (run-on rule)
    assert [f["utterance"] for f in finals] == list(range(len(finals)))
    assert sum(f["endpoint"] for f in finals) == 2 and finals[-1]["endpoint"]
    assert wer(" ".join(TRANSCRIPTS[n] for n in names), result.text) <= 0.1
    for f in finals:
        assert f["language"] == "en" and f["words"]
        assert all(f["start"] - 0.01 <= w["start"] <= w["end"] <= f["end"] + 0.01
                   for w in f["words"])
    types = [m["type"] for m in result.messages]
    assert types[0] == "speech_start" and types[-1] == "end"
    partials = result.of("partial")
    assert partials and types.index("partial") < types.index("final")
    for n in range(len(finals)):
        committed = [p["committed"] for p in partials if p["utterance"] == n]
        assert all(b.startswith(a) for a, b in itertools.pairwise(committed))
        assert all(p["text"].startswith(p["committed"]) for p in partials)
        if committed:  # a final never takes back what its partials said was settled
            assert finals[n]["text"].startswith(committed[-1])
    assert result.of("end")[0]["duration"] == pytest.approx(
        len(with_pauses(names, 8000)) / 8000, abs=0.01)
    assert result.close_code == 1000


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
@pytest.mark.parametrize("rate", [8000, 16000, 48000])
async def test_formats_and_rates(server: Server, encoding: str, rate: int) -> None:
    audio = with_pauses(["tt-weasels"], rate, 0.8)
    result = await stream(server.url, audio, rate=rate, encoding=encoding, speed=8.0,
                          query="interim_results=false")
    assert wer(TRANSCRIPTS["tt-weasels"], result.text) <= 0.2
    assert result.of("partial") == []


async def test_end_flushes_speech_cut_off_mid_utterance(server: Server) -> None:
    audio = np.concatenate([silence(0.3, 16000), clip_at("vm-nobodyavail", 16000)])
    result = await stream(server.url, audio, speed=8.0)  # no pause before `end`
    assert wer(TRANSCRIPTS["vm-nobodyavail"], result.text) <= 0.2


async def test_flush_finalizes_now(server: Server) -> None:
    audio = np.concatenate([silence(0.3, 16000), clip_at("conf-onlyperson", 16000)])
    async with connect(server.url) as ws:
        await ws.recv()
        data = (audio * 32767).astype("<i2").tobytes()
        for i in range(0, len(data), 6400):
            await ws.send(data[i : i + 6400])
        await ws.send(json.dumps({"type": "flush"}))
        async with asyncio.timeout(30):
            while (msg := json.loads(await ws.recv()))["type"] != "final":
                pass
        assert wer(TRANSCRIPTS["conf-onlyperson"], msg["text"]) <= 0.2


@pytest.mark.parametrize("kind", ["silence", "music", "noise"])
async def test_non_speech_gives_no_words(server: Server, kind: str) -> None:
    if kind == "music":
        audio, rate = read_clip("music-macroform-cold_day")
    else:
        rate = 16000
        audio = (silence(6, rate) if kind == "silence"
                 else np.random.default_rng(3).normal(0, 0.05, 6 * rate).astype(np.float32))
    result = await stream(server.url, audio, rate=rate, speed=4.0)
    assert result.of("final") == []
    assert all(not p["text"] for p in result.of("partial"))


async def test_run_on_speech_gets_finals_before_the_stream_ends(server: Server) -> None:
    names = ["agent-alreadyon", "conf-onlyperson", "vm-nobodyavail", "cannot-complete-as-dialed",
             "agent-alreadyon"]
    audio = np.concatenate([silence(0.3, 16000)] + [clip_at(n, 16000) for n in names])
    result = await stream(server.url, audio, speed=1.5, end=True)
    types = [m["type"] for m in result.messages]
    assert len(result.of("final")) >= 2
    assert types.index("final") < len(types) - 2  # a final before the end-of-stream flush
    assert wer(" ".join(TRANSCRIPTS[n] for n in names), result.text) <= 0.15


async def test_bad_inputs_get_documented_errors_and_others_carry_on(server: Server) -> None:
    good = asyncio.create_task(stream(server.url, with_pauses(["agent-alreadyon"], 8000),
                                      rate=8000, speed=2.0))

    async def exchange(query: str, *frames: bytes | str) -> tuple[list[dict], int | None]:
        return await helpers.exchange(f"{server.url}?{query}", *frames)

    msgs, code = await exchange("sample_rate=7000")
    assert (msgs[0]["code"], code) == ("bad_parameter", 1008)
    msgs, code = await exchange("encoding=mp3")
    assert (msgs[0]["code"], code) == ("bad_parameter", 1008)
    msgs, code = await exchange("", "{not json", json.dumps({"type": "dance"}),
                                json.dumps({"type": "end"}))
    assert [m["type"] for m in msgs[1:]] == ["error", "error", "end"]
    assert {m.get("code") for m in msgs[1:3]} == {"bad_message"} and code == 1000
    msgs, code = await exchange("", b"\x00\x01\x02")
    assert (msgs[-1]["code"], code) == ("bad_audio", 1007)
    nan = np.array([0.1, np.nan], "<f4").tobytes()
    msgs, code = await exchange("encoding=pcm_f32le", nan)
    assert (msgs[-1]["code"], code) == ("bad_audio", 1007)
    msgs, code = await exchange("", b"\x00" * (server.config.max_frame_bytes + 2))
    assert (msgs[-1]["code"], code) == ("frame_too_large", 1009)

    # speech already spoken is finalized before a bad frame closes the session
    speech = (np.concatenate([silence(0.3, 16000), clip_at("tt-weasels", 16000)])
              * 32767).astype("<i2").tobytes()
    msgs, code = await exchange("", speech, b"\x00")
    assert [m["type"] for m in msgs][-2:] == ["final", "error"] and code == 1007
    assert wer(TRANSCRIPTS["tt-weasels"], msgs[-2]["text"]) <= 0.2

    result = await good
    assert wer(TRANSCRIPTS["agent-alreadyon"], result.text) <= 0.1


async def test_http_endpoints(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    await until(lambda: server.session_count == 0)  # earlier tests' sessions have closed
    status, body = await asyncio.to_thread(get, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["model"] == "tiny.en"
    assert health["device"] == server.engine.device in ("cpu", "cuda")  # where it runs here
    assert health["ready"] is True and health["sessions"] == 0
    assert (await asyncio.to_thread(get, "/nope"))[0] == 404
    assert (await asyncio.to_thread(get, "/ws"))[0] == 426
    async with connect(f"ws://127.0.0.1:{server.port}/") as ws:  # `/` upgrades like `/ws`
        assert json.loads(await ws.recv())["type"] == "ready"


async def raw_get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    """GET `target` byte for byte (no client-side path normalization)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def test_web_client_files_are_served_and_nothing_else(server: Server) -> None:
    status, headers, body = await raw_get(server.port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script type="module" src="app.js">' in body
    for path, kind in (("/app.js", "text/javascript"), ("/worklet.js", "text/javascript"),
                       ("/style.css", "text/css"), ("/index.html", "text/html")):
        status, headers, _ = await raw_get(server.port, path)
        assert status == 200 and headers["Content-Type"].startswith(kind), path
        assert headers["X-Content-Type-Options"] == "nosniff"
    for attack in ("/../pyproject.toml", "/..%2fpyproject.toml", "/%2e%2e/pyproject.toml",
                   "/../../../../etc/passwd", "//etc/passwd", "/..\\pyproject.toml",
                   "/web/../../pyproject.toml", "/app.js%00.html", "/.", "/%2e%2e%2f"):
        status, _, body = await raw_get(server.port, attack)
        assert status == 404 and b"tool.setuptools" not in body and b"root:" not in body, attack


async def test_a_client_sending_faster_than_real_time_is_not_treated_as_live(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its decodes are marked realtime=False, so they queue behind live sessions' finals."""
    seen: list[bool] = []
    transcribe = server.engine.transcribe

    async def spy(request):  # type: ignore[no-untyped-def]
        seen.append(request.realtime)
        return await transcribe(request)

    monkeypatch.setattr(server.engine, "transcribe", spy)
    audio = with_pauses(["agent-alreadyon", "tt-weasels", "cannot-complete-as-dialed"], 16000)
    await stream(server.url, audio, speed=50.0)  # 14 s of audio in well under a second
    assert seen and not seen[-1]
    seen.clear()
    await stream(server.url, with_pauses(["tt-weasels"], 16000), speed=1.0)
    assert seen and all(seen)
