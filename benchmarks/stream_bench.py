"""Streaming benchmark: real speech with natural pauses (and run-on speech), sent in real time.

Starts `rtasr serve` in a subprocess (or uses --url), streams a long recording built from
Debian's Asterisk prompts to 1 and N concurrent sessions, and reports WER (against offline
faster-whisper on the same clips with the same model), final latency (arrival of the final minus
the moment the utterance's last sample was sent), first-text latency, utterances without a final,
and the server's CPU use.

    python benchmarks/stream_bench.py                      # defaults: 40 clips, 1 and 4 sessions
    python benchmarks/stream_bench.py --sessions 1 --runon
    python benchmarks/stream_bench.py --url ws://gpu-box:8000/ws --sessions 1,16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import RATE, Span, build_stream, load_clips
from websockets.asyncio.client import connect

from rtasr.wer import edit_distance, normalize

CHUNK_S = 0.1


@dataclass
class Received:
    at: float  # seconds since the stream's first sample was sent
    msg: dict[str, object]


@dataclass
class SessionRun:
    messages: list[Received] = field(default_factory=list)
    error: str | None = None


async def stream_session(url: str, audio: np.ndarray, delay_s: float, speed: float) -> SessionRun:
    await asyncio.sleep(delay_s)
    run = SessionRun()
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(CHUNK_S * RATE) * 2
    async with connect(url + "?sample_rate=16000", max_size=None) as ws:
        first = json.loads(await ws.recv())
        if first["type"] == "error":  # refused, e.g. overloaded
            run.error = str(first["code"])
            return run
        t0 = time.monotonic()

        async def receive() -> None:
            async for text in ws:
                run.messages.append(Received(time.monotonic() - t0, json.loads(text)))

        receiver = asyncio.create_task(receive())
        for i, off in enumerate(range(0, len(pcm), step)):
            await ws.send(pcm[off : off + step])
            wait = t0 + (i + 1) * CHUNK_S / speed - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(receiver, 120)
    return run


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def score(run: SessionRun, spans: list[Span], runon: bool) -> dict[str, object]:
    finals = [r for r in run.messages if r.msg["type"] == "final"]
    texts = [r for r in run.messages if r.msg["type"] in ("partial", "final") and r.msg["text"]]
    hyp = normalize(" ".join(str(r.msg["text"]) for r in finals))
    ref = normalize(" ".join(s.text for s in spans))
    errors = edit_distance(ref, hyp)
    latencies, first_text, missing = [], [], 0
    for span in spans:
        covering = [r for r in finals if float(r.msg["start"]) <= span.end
                    and float(r.msg["end"]) >= span.start]
        if not covering:
            missing += 1
            continue
        if not runon:
            latencies.append(covering[-1].at - span.end)
        early = [r for r in texts if float(r.msg["start"]) <= span.start + 0.5
                 and float(r.msg["end"]) >= span.start]
        if early:
            first_text.append(early[0].at - span.start)
    if runon:  # no pauses: a final is late by how long after its last sample it came
        latencies = [r.at - float(r.msg["end"]) for r in finals]
    return {"errors": errors, "words": len(ref), "latencies": latencies,
            "first_text": first_text, "missing": missing, "finals": len(finals),
            "partials": sum(r.msg["type"] == "partial" for r in run.messages)}


def offline_wer(clips: list, model: str | None, beam_size: int) -> float:
    from faster_whisper import WhisperModel

    import rtasr.engine as engine

    spec = engine.resolve_model(model)
    fw = WhisperModel(spec.source, device="cpu", compute_type="int8")
    errors = words = 0
    for clip in clips:
        segments, _ = fw.transcribe(clip.audio, language="en", beam_size=beam_size,
                                    condition_on_previous_text=False)
        ref = normalize(clip.text)
        errors += edit_distance(ref, normalize(" ".join(s.text for s in segments)))
        words += len(ref)
    return errors / words


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    """`rtasr serve` on a free port; its log goes on to benchmarks/results/server.log."""
    cmd = [sys.executable, "-m", "rtasr", "serve", "--port", "0", "--host", "127.0.0.1", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write("  server: " + line)
        if m := re.search(r"listening on (ws://\S+)", line):
            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return proc, m.group(1)
    raise SystemExit("the server did not start")


def _drain(pipe: IO[str]) -> None:
    """Keep reading the server's log: a full pipe would block the server."""
    log = Path(__file__).parent / "results" / "server.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        for line in pipe:
            out.write(line)


async def run_level(url: str, audio: np.ndarray, spans: list[Span], sessions: int,
                    runon: bool, speed: float) -> dict[str, object]:
    runs = await asyncio.gather(*(stream_session(url, audio, i * 0.37, speed)
                                  for i in range(sessions)))
    scores = [score(r, spans, runon) for r in runs]
    lat = [x for s in scores for x in s["latencies"]]  # type: ignore[attr-defined]
    first = [x for s in scores for x in s["first_text"]]  # type: ignore[attr-defined]
    return {
        "sessions": sessions,
        "wer": sum(s["errors"] for s in scores) / sum(s["words"] for s in scores),  # type: ignore[misc]
        "final_p50": pct(lat, 50), "final_p95": pct(lat, 95), "final_max": max(lat, default=0),
        "first_p50": pct(first, 50), "first_p95": pct(first, 95),
        "missing": sum(s["missing"] for s in scores),  # type: ignore[misc]
        "utterances": len(spans) * sessions,
        "partials_per_final": sum(s["partials"] for s in scores)  # type: ignore[misc]
        / max(1, sum(s["finals"] for s in scores)),  # type: ignore[misc]
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="benchmark a running server instead of starting one")
    ap.add_argument("--clips", type=int, default=40, help="speech clips in the stream")
    ap.add_argument("--sessions", default="1,4", help="comma-separated concurrency levels")
    ap.add_argument("--runon", action="store_true", help="also stream the clips without pauses")
    ap.add_argument("--speed", type=float, default=1.0, help="1.0 is real time")
    ap.add_argument("--no-offline", action="store_true", help="skip the offline WER yardstick")
    ap.add_argument("--model", default=None, help="model for the offline yardstick (and server)")
    ap.add_argument("--beam-size", type=int, default=1,
                    help="beam size for the server's finals and the offline yardstick")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("server_args", nargs="*", help="extra `rtasr serve` arguments (after --)")
    args = ap.parse_args()

    clips = load_clips(args.clips)
    paused, spans = build_stream(clips, pause_s=(0.8, 2.0))
    total = len(paused) / RATE
    print(f"{len(clips)} clips, {sum(len(c.audio) for c in clips) / RATE:.0f} s of speech, "
          f"stream {total:.0f} s", flush=True)
    results: dict[str, object] = {"clips": len(clips), "stream_s": total, "levels": []}
    if not args.no_offline:
        t = time.perf_counter()
        results["offline_wer"] = offline_wer(clips, args.model, args.beam_size)
        print(f"offline WER {results['offline_wer']:.2%} ({time.perf_counter() - t:.0f} s)")

    proc = None
    url = args.url
    if url is None:
        extra = ["--beam-size", str(args.beam_size), *args.server_args]
        if args.model:
            extra += ["--model", args.model]
        proc, url = start_server(extra)
    try:
        streams = [("paused", paused, spans, False)]
        if args.runon:
            runon, runon_spans = build_stream(clips, pause_s=(0.0, 0.12), seed=3)
            streams.append(("run-on", runon, runon_spans, True))
        for label, audio, sp, is_runon in streams:
            for n in (int(x) for x in args.sessions.split(",")):
                cpu0, wall0 = (cpu_seconds(proc.pid) if proc else 0.0), time.monotonic()
                level = asyncio.run(run_level(url, audio, sp, n, is_runon, args.speed))
                if proc:
                    used = cpu_seconds(proc.pid) - cpu0
                    level["server_cpu"] = used / (time.monotonic() - wall0)
                level["stream"] = label
                results["levels"].append(level)  # type: ignore[attr-defined]
                print(json.dumps(level), flush=True)
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def print_table(results: dict[str, object]) -> None:
    print()
    if "offline_wer" in results:
        print(f"offline WER (same model, same clips): {results['offline_wer']:.2%}")
    print("| stream | sessions | WER | final p50 | final p95 | final max | first text p50 "
          "| first text p95 | no final | partials/final | server CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for lv in results["levels"]:  # type: ignore[attr-defined]
        print(f"| {lv['stream']} | {lv['sessions']} | {lv['wer']:.2%} | {lv['final_p50']:.2f} s "
              f"| {lv['final_p95']:.2f} s | {lv['final_max']:.2f} s | {lv['first_p50']:.2f} s "
              f"| {lv['first_p95']:.2f} s | {lv['missing']}/{lv['utterances']} "
              f"| {lv['partials_per_final']:.1f} | {lv.get('server_cpu', float('nan')):.0%} |")


if __name__ == "__main__":
    main()
