"""Home Assistant's wait for its text: rtasr's Wyoming port against wyoming-faster-whisper.

Both servers get the same spoken commands (Asterisk prompts of 2-8 s from the corpus) the way
Home Assistant sends them: `transcribe`, `audio-start`, 100 ms `audio-chunk`s in real time (the
words, then 0.7 s of silence: Home Assistant's own VAD ends a command after 0.7 s at its default
sensitivity), `audio-stop`, on a connection per command, through the `wyoming` package's own
client. Reported per server: the time from `audio-stop` to `transcript` (p50, p95, max), the
WER against the prompts' texts, and the same with 16 satellites speaking at once, each keeping
one connection for several commands (`lost`: commands without a transcript). The yardstick
(rtasr.eval.yardstick: each command decoded whole, beam 5, same model) is decoded after both.

wyoming-faster-whisper runs from its own virtual environment, on the same model directory
(the bundled tiny.en, int8), with --local-files-only: nothing is downloaded.

    python -m venv /tmp/wfw-venv && /tmp/wfw-venv/bin/pip install wyoming-faster-whisper
    python benchmarks/wyoming_bench.py --wfw-python /tmp/wfw-venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

sys.path.insert(0, str(Path(__file__).parent))
from corpus import RATE, Clip, load_clips
from stream_bench import pct, start_server, stop_server, write_json

from rtasr.config import Config
from rtasr.engine.engine import effective_config, resolve_model
from rtasr.eval import yardstick
from rtasr.eval.wer import corpus_wer

HA_SILENCE_S = 0.7  # Home Assistant's VAD: silence that ends a command (default sensitivity)
silence_s = HA_SILENCE_S  # --silence-s
LEAD_S = 0.3
CHUNK_S = 0.1


def command_pcm(clip: Clip) -> bytes:
    audio = np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), clip.audio,
                            np.zeros(int(silence_s * RATE), np.float32)])
    return bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


async def speak(client: AsyncTcpClient, pcm: bytes) -> float:
    """One command in real time; when its audio-stop went out."""
    await client.write_event(Transcribe(language="en").event())
    await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
    step = int(RATE * CHUNK_S) * 2
    t0 = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), step)):
        await asyncio.sleep(max(0.0, t0 + i * CHUNK_S - time.monotonic()))
        await client.write_event(AudioChunk(rate=RATE, width=2, channels=1,
                                            audio=pcm[offset:offset + step]).event())
    await asyncio.sleep(max(0.0, t0 + len(pcm) / 2 / RATE - time.monotonic()))
    await client.write_event(AudioStop().event())
    return time.monotonic()


async def transcript_of(client: AsyncTcpClient) -> str | None:
    while (event := await client.read_event()) is not None:
        if Transcript.is_type(event.type):
            return Transcript.from_event(event).text
    return None


async def one(port: int, pcm: bytes) -> tuple[float, str | None]:
    """A command on its own connection, read as Home Assistant reads it (after audio-stop)."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        stopped = await speak(client, pcm)
        async with asyncio.timeout(60):
            text = await transcript_of(client)
        return time.monotonic() - stopped, text


async def satellite(port: int, clips: list[Clip], delay_s: float, keep: bool
                    ) -> list[tuple[float, str | None]]:
    """Commands one after another, a second apart, on one kept connection (`keep`; else a
    connection each: wyoming-faster-whisper closes it after each transcript)."""
    await asyncio.sleep(delay_s)
    if not keep:
        return [r for clip in clips for r in await satellite(port, [clip], 0.0, True)]
    out: list[tuple[float, str | None]] = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for clip in clips:
            stopped = await speak(client, command_pcm(clip))
            try:
                async with asyncio.timeout(60):
                    text = await transcript_of(client)
            except TimeoutError:
                text = None
            out.append((time.monotonic() - stopped, text))
            await asyncio.sleep(1.0)
    return out


def summary(runs: list[tuple[float, str | None]], clips: list[Clip]) -> dict[str, Any]:
    waits = [w for w, text in runs if text is not None]
    return {"commands": len(runs), "lost": sum(text is None for _, text in runs),
            "wait_p50_s": round(pct(waits, 50), 3), "wait_p95_s": round(pct(waits, 95), 3),
            "wait_max_s": round(max(waits, default=0.0), 3),
            "wer": round(corpus_wer([c.text for c in clips], [t or "" for _, t in runs]), 4)}


async def measure(port: int, clips: list[Clip], crowd: int, per_satellite: int,
                  keep: bool) -> dict[str, Any]:
    await one(port, command_pcm(clips[0]))  # warm-up, not counted
    alone = [await one(port, command_pcm(clip)) for clip in clips]
    rng = np.random.default_rng(5)
    plans = [[clips[j] for j in rng.choice(len(clips), per_satellite, replace=False)]
             for _ in range(crowd)]
    together = await asyncio.gather(*(satellite(port, plan, i * 0.25, keep)
                                      for i, plan in enumerate(plans)))
    return {"alone": summary(alone, clips),
            "satellites": summary([r for runs in together for r in runs],
                                  [c for plan in plans for c in plan]),
            "texts": [text for _, text in alone]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_rtasr(extra: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc, _ = start_server(["--wyoming-port", str(port := free_port()), *extra])
    return proc, port


def start_wfw(python: str, model: str, beam_size: int, threads: int
              ) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    cmd = [python, "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{port}",
           "--model", model, "--stt-library", "faster-whisper", "--local-files-only",
           "--data-dir", "/tmp/wfw-data", "--compute-type", "int8", "--device", "cpu",
           "--cpu-threads", str(threads), "--beam-size", str(beam_size), "--language", "en"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write("  wfw: " + line)
        if re.search(r"\bReady\b", line):  # logged just before it binds its port
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with socket.socket() as s, contextlib.suppress(OSError):
                    s.connect(("127.0.0.1", port))
                    return proc, port
                time.sleep(0.1)
    raise SystemExit("wyoming-faster-whisper did not start")


def yardstick_wer(clips: list[Clip]) -> float:
    """Each command's audio (as the servers got it) decoded whole, beam 5."""
    engine = yardstick.engine(effective_config(Config()))
    try:
        texts = [engine.transcribe_whole(
            np.frombuffer(command_pcm(clip), "<i2").astype(np.float32) / np.float32(32768),
            language="en", beam_size=yardstick.BEAM_SIZE) for clip in clips]
        return round(corpus_wer([c.text for c in clips], texts), 4)
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=24)
    parser.add_argument("--satellites", type=int, default=16)
    parser.add_argument("--per-satellite", type=int, default=3)
    parser.add_argument("--wfw-python", default="/tmp/wfw-venv/bin/python")
    parser.add_argument("--wfw-beam-sizes", default="5,1",
                        help="wyoming-faster-whisper's beam (5: its default on x86)")
    parser.add_argument("--silence-s", type=float, default=HA_SILENCE_S,
                        help="silence after the words before audio-stop (Home Assistant's "
                             "VAD: 0.7 s; 0.25 at its aggressive setting)")
    parser.add_argument("--no-rtasr", action="store_true", help="measure only the others")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    global silence_s
    silence_s = args.silence_s
    clips = load_clips(args.commands, seed=7, min_s=2.0, max_s=8.0)
    model = resolve_model(None).source
    threads = os.cpu_count() or 2
    results: dict[str, Any] = {
        "silence_s": silence_s, "commands_s": round(sum(len(c.audio) for c in clips) / RATE, 1),
        "cpus": threads, "model": model}
    runs: list[tuple[str, Callable[[], tuple[subprocess.Popen[str], int]]]] = [
        ("rtasr", lambda: start_rtasr([]))][args.no_rtasr:]
    for beam in map(int, args.wfw_beam_sizes.split(",")):
        runs.append((f"wyoming-faster-whisper beam {beam}",
                     partial(start_wfw, args.wfw_python, model, beam, threads)))
    for name, start in runs:
        print(f"== {name}", file=sys.stderr, flush=True)
        proc, port = start()
        try:
            results[name] = asyncio.run(measure(port, clips, args.satellites,
                                                args.per_satellite, keep=name == "rtasr"))
        finally:
            stop_server(proc)
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "texts"}),
              flush=True)
    results["yardstick_wer"] = yardstick_wer(clips)
    print("yardstick wer", results["yardstick_wer"], flush=True)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
