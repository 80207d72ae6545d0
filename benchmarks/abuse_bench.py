"""The abuse benchmark: generated client messages from every dialect against one `rtasr serve`,
while one honest session streams real speech.

For each of the native protocol, Deepgram live, OpenAI realtime, OpenAI's
`POST /v1/audio/transcriptions` and Deepgram's `POST /v1/listen`, it sends `--messages`
generated messages (control messages with random JSON in every field, random query strings
and form fields; seeded), a few connections at a time, within `--time-limit-s`. Meanwhile an
honest native session streams real speech (tests/data) in real time. It reports:

- websocket closes with 1011 and HTTP 5xx answers (target 0),
- tracebacks in the server's log (target 0),
- the server's RSS growth from after a warm-up run to after the storm (target < 50 MB): raw,
  and after glibc's `malloc_trim(0)` in the server (memory still in use; the rest is memory
  freed but kept by the allocator for reuse; see benchmarks/server_probe.py),
- whether the honest session's finals are word for word those it gets alone.

    python benchmarks/abuse_bench.py --messages 2000 --storms 3

`--only openai-rest,deepgram-rest` storms those dialects alone; `RTASR_TRACEMALLOC=25` has the
server trace Python allocations and prints what grew most over the last storm.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import random
import signal
import string
import sys
import time
import tracemalloc
import wave
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from abuse_rss import idle, memory_mb
from stream_bench import start_server, stop_server

from tests.helpers import clip_at, encode, silence, stream

HONEST = ["tt-weasels", "vm-nobodyavail", "agent-alreadyon", "conf-invalidpin"]
PER_CONNECTION = 100  # messages on one websocket before it closes
CONCURRENCY = 3  # connections at once per websocket dialect
REST_CONCURRENCY = 2  # requests at once per REST endpoint (both together under MAX_FILES)
LOG = Path(__file__).parent / "results" / "server.log"
PROBE = Path(__file__).parent / "results" / "server_probe.json"
DIALECTS = ["native", "deepgram", "openai-realtime", "openai-rest", "deepgram-rest"]


def junk(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: odd numbers, long strings, nesting."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 7, 8000, 16000, 24000, 10**6, 2**63, -(2**40)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e300, 1e-300, 16000.0, float("nan"), float("inf")])
    if kind == 4:
        return "".join(rng.choices(string.printable, k=rng.choice([0, 3, 40, 2000])))
    if kind == 5:
        return rng.choice(["en", "en-US", "multi", "x" * 600_000, "fast", "true", "audio/pcm"])
    if kind == 6:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["type", "rate", "x", "session", "audio"]): junk(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def maybe(rng: random.Random, good: list[Any]) -> Any:
    return rng.choice(good) if rng.random() < 0.6 else junk(rng)


def native_message(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["{not json", "[1, 2]", "null", '"flush"', "{}"])
    return json.dumps({"type": maybe(rng, ["flush", "keepalive", "dance"]),
                       **({"extra": junk(rng)} if rng.random() < 0.3 else {})})


def deepgram_message(rng: random.Random) -> str:
    return json.dumps({"type": maybe(rng, ["KeepAlive", "Finalize", "Nope"]),
                       **({"extra": junk(rng)} if rng.random() < 0.3 else {})})


def openai_message(rng: random.Random) -> str:
    kind = maybe(rng, ["session.update"] * 4 + ["input_audio_buffer.append",
                                                "input_audio_buffer.commit",
                                                "input_audio_buffer.clear", "response.create"])
    event: dict[str, Any] = {"type": kind, "event_id": maybe(rng, ["e1"])}
    if kind == "input_audio_buffer.append":
        pcm = bytes(rng.choice([0, 2, 480, 4800]))
        event["audio"] = maybe(rng, [base64.b64encode(pcm).decode(), "!!not base64"])
    if kind == "session.update":
        event["session"] = maybe(rng, [{"type": "transcription", "audio": {"input": {
            "format": maybe(rng, [{"type": maybe(rng, ["audio/pcm", "audio/pcmu"]),
                                   "rate": maybe(rng, [24000, 16000, 1, 96000, "fast"])}]),
            "transcription": maybe(rng, [{"language": maybe(rng, ["en", "en-US", 7]),
                                          "prompt": maybe(rng, ["Asterisk", "x" * 600_000]),
                                          "model": maybe(rng, ["gpt-4o-transcribe"])}]),
            "turn_detection": maybe(rng, [None, {
                "type": maybe(rng, ["server_vad", "semantic_vad"]),
                "silence_duration_ms": maybe(rng, [500, None, 0]),
                "prefix_padding_ms": maybe(rng, [300, "lots", -5])}]),
            "noise_reduction": maybe(rng, [None, {"type": "near_field"}])}}}])
    return json.dumps(event)


def query(rng: random.Random, names: list[str], good: list[str]) -> str:
    picked = rng.sample(names, rng.randrange(len(names) // 2 + 1))
    values = {n: rng.choice(good) if rng.random() < 0.7 else str(junk(rng))[:3000]
              for n in picked}
    return urlencode(values)


NATIVE_Q = (["sample_rate", "encoding", "language", "task", "prompt", "interim_results"],
            ["16000", "8000", "pcm_s16le", "mulaw", "en", "translate", "true", "off"])
DEEPGRAM_Q = (["encoding", "sample_rate", "channels", "language", "punctuate", "interim_results",
               "utterance_end_ms", "endpointing", "keyterm", "model", "vad_events"],
              ["linear16", "16000", "1", "en", "multi", "true", "1000", "300", "false", "x"])


class Tally:
    """What the storm saw: close codes, HTTP statuses, messages sent."""

    def __init__(self) -> None:
        self.closes: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()


async def ws_storm(name: str, base: str, path: str, make: Any, queries: Any, n: int,
                   rng: random.Random, tally: Tally, deadline: float) -> None:
    """`n` generated messages over websockets, PER_CONNECTION a connection, CONCURRENCY at
    once; the server's replies are read as they come."""

    async def one(seed: int) -> None:
        local = random.Random(seed)
        q = queries(local) if local.random() < 0.5 else ""
        try:
            async with asyncio.timeout(60), connect(f"{base}{path}?{q}", max_size=None) as ws:
                reader = asyncio.create_task(_drain(ws))
                for _ in range(PER_CONNECTION):
                    if time.monotonic() > deadline:
                        break
                    if local.random() < 0.1:
                        await ws.send(encode(silence(0.1, 16000)))
                    await ws.send(make(local))
                    tally.sent[name] += 1
                await ws.close()
                await reader
                tally.closes[f"{name} {ws.close_code}"] += 1
        except InvalidStatus as exc:
            tally.statuses[f"{name} {exc.response.status_code}"] += 1
        except ConnectionClosed as exc:
            tally.closes[f"{name} {exc.rcvd.code if exc.rcvd else 'no close frame'}"] += 1
        except (OSError, TimeoutError) as exc:
            tally.closes[f"{name} {type(exc).__name__}"] += 1

    while tally.sent[name] < n and time.monotonic() < deadline:
        await asyncio.gather(*(one(rng.randrange(2**32)) for _ in range(CONCURRENCY)))


async def _drain(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


def silent_wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(encode(silence(seconds, 16000)))
    return out.getvalue()


async def rest_storm(name: str, http: str, n: int, rng: random.Random, tally: Tally,
                     deadline: float) -> None:
    """`n` generated REST requests, REST_CONCURRENCY at once, each with a short silent file."""
    wav = silent_wav(0.5)
    fields = ["model", "language", "prompt", "response_format", "temperature", "stream",
              "timestamp_granularities[]"]
    good = ["whisper-1", "en", "fr-CA", "json", "srt", "verbose_json", "0", "true", "word"]

    async def one(client: httpx.AsyncClient, seed: int) -> None:
        local = random.Random(seed)
        try:
            if name == "openai-rest":
                data = {f: local.choice(good) if local.random() < 0.6 else str(junk(local))
                        for f in local.sample(fields, local.randrange(len(fields)))}
                answer = await client.post(f"{http}/v1/audio/transcriptions", data=data,
                                           files={"file": ("s.wav", wav)})
            else:
                answer = await client.post(f"{http}/v1/listen?{query(local, *DEEPGRAM_Q)}",
                                           content=wav, headers={"Content-Type": "audio/wav"})
            tally.statuses[f"{name} {answer.status_code}"] += 1
        except httpx.HTTPError as exc:
            tally.statuses[f"{name} {type(exc).__name__}"] += 1
        tally.sent[name] += 1

    async with httpx.AsyncClient(timeout=60) as client:
        while tally.sent[name] < n and time.monotonic() < deadline:
            await asyncio.gather(*(one(client, rng.randrange(2**32))
                                   for _ in range(REST_CONCURRENCY)))


async def honest(url: str) -> list[str]:
    """Real speech in real time on the native protocol: the finals' texts."""
    audio = np.concatenate([np.concatenate([silence(0.4, 16000), clip_at(n, 16000)])
                            for n in HONEST] + [silence(1.0, 16000)])
    result = await stream(url, audio, speed=1.0, timeout_s=300)
    return [m["text"] for m in result.of("final")]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="per dialect")
    parser.add_argument("--time-limit-s", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--storms", type=int, default=1,
                        help="storms in a row: a leak grows with each, a high-water mark not")
    parser.add_argument("--only", default=",".join(DIALECTS),
                        help="comma-separated dialects to storm (default: all)")
    args, extra = parser.parse_known_args()
    dialects = args.only.split(",")
    PROBE.parent.mkdir(exist_ok=True)
    for old in [PROBE, *PROBE.parent.glob(f"{PROBE.name}.*.snap")]:
        old.unlink()
    proc, url = start_server(extra, launcher=(str(Path(__file__).parent / "server_probe.py"),),
                             env={"RTASR_PROBE_OUT": str(PROBE)})
    base = url.removesuffix("/ws")
    http = base.replace("ws://", "http://")
    rng = random.Random(args.seed)
    try:
        await idle(http)
        alone = await honest(url)  # also the warm-up
        await idle(http)
        before = await probe(proc.pid)
        for storm in range(1, args.storms + 1):
            tally = Tally()
            t0 = time.monotonic()
            during, _ = await asyncio.gather(honest(url), storm_all(
                dialects, base, http, args.messages, rng, tally, t0 + args.time_limit_s))
            storm_s = time.monotonic() - t0
            await idle(http)
            after = await probe(proc.pid)
            print(f"storm {storm}:")
            report(tally, storm_s, alone, during, before, after)
            top_growth(after.get("probe", 0))
    finally:
        stop_server(proc)


async def probe(pid: int) -> dict[str, float]:
    """The server's memory, raw and after `malloc_trim(0)`, and its peak, in MB."""
    rss_raw, peak = memory_mb(pid)
    last = json.loads(PROBE.read_text())["probe"] if PROBE.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    async with asyncio.timeout(60):
        while not PROBE.exists() or json.loads(PROBE.read_text())["probe"] == last:
            await asyncio.sleep(0.1)
    return {**json.loads(PROBE.read_text()), "raw_mb": rss_raw, "peak_mb": peak}


def top_growth(n: int, lines: int = 8) -> None:
    """With RTASR_TRACEMALLOC: the allocation sites that grew most between the last two probes."""
    old, new = Path(f"{PROBE}.{n - 1}.snap"), Path(f"{PROBE}.{n}.snap")
    if not (old.exists() and new.exists()):
        return
    diff = tracemalloc.Snapshot.load(str(new)).compare_to(
        tracemalloc.Snapshot.load(str(old)), "traceback")
    print("Python allocations that grew most over this storm:")
    for stat in diff[:lines]:
        print(f"  {stat.size_diff / 2**20:+.2f} MB {stat.count_diff:+d} blocks")
        for frame in stat.traceback.format()[-6:]:
            print(f"    {frame}")


def storm_all(dialects: list[str], base: str, http: str, n: int, rng: random.Random,
              tally: Tally, deadline: float) -> asyncio.Future[list[None]]:
    """The chosen dialects' storms at once."""
    storms = {
        "native": lambda: ws_storm("native", base, "/ws", native_message,
                                   lambda r: query(r, *NATIVE_Q), n, rng, tally, deadline),
        "deepgram": lambda: ws_storm("deepgram", base, "/v1/listen", deepgram_message,
                                     lambda r: query(r, *DEEPGRAM_Q), n, rng, tally, deadline),
        "openai-realtime": lambda: ws_storm("openai-realtime", base, "/v1/realtime",
                                            openai_message, lambda r: "intent=transcription", n,
                                            rng, tally, deadline),
        "openai-rest": lambda: rest_storm("openai-rest", http, n, rng, tally, deadline),
        "deepgram-rest": lambda: rest_storm("deepgram-rest", http, n, rng, tally, deadline)}
    return asyncio.gather(*(storms[d]() for d in dialects))


def report(tally: Tally, storm_s: float, alone: list[str], during: list[str],
           before: dict[str, float], after: dict[str, float]) -> None:
    time.sleep(0.5)  # the log's reader thread writes the last lines (counted from the start)
    log = LOG.read_text() if LOG.exists() else ""
    closes_1011 = sum(c for k, c in tally.closes.items() if k.endswith(" 1011"))
    http_5xx = sum(c for k, c in tally.statuses.items() if k.split()[-1].startswith("5"))
    print(f"storm: {storm_s:.0f} s; messages sent: {dict(tally.sent)}")
    print(f"closes: {dict(sorted(tally.closes.items()))}")
    print(f"statuses: {dict(sorted(tally.statuses.items()))}")
    print(f"closes with 1011: {closes_1011}; HTTP 5xx: {http_5xx}; "
          f"tracebacks in the server log: {log.count('Traceback')}")
    print(f"server RSS: {before['raw_mb']:.0f} MB after warm-up, {after['raw_mb']:.0f} MB after "
          f"this storm ({after['raw_mb'] - before['raw_mb']:+.0f} MB), "
          f"peak {after['peak_mb']:.0f} MB")
    print(f"after malloc_trim: {before['trimmed_rss_mb']:.0f} MB after warm-up, "
          f"{after['trimmed_rss_mb']:.0f} MB after this storm "
          f"({after['trimmed_rss_mb'] - before['trimmed_rss_mb']:+.0f} MB in use)")
    if "traced_mb" in after:
        print(f"traced Python memory: {before['traced_mb']:.1f} MB after warm-up, "
              f"{after['traced_mb']:.1f} MB after this storm")
    same = alone == during
    print(f"honest session's finals word for word as alone: {same}")
    if not same:
        print(f"  alone:  {alone}\n  during: {during}")


if __name__ == "__main__":
    asyncio.run(main())
