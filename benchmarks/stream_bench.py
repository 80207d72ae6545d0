"""Streaming benchmark: is every spoken word in exactly one final, and how soon?

Builds three kinds of stream from Debian's Asterisk prompts (real recorded speech) and sends
each in real time, in 100 ms frames, to `rtasr serve` (started here, or --url):

- paused: prompts with pauses of 0.7-2.0 s between them;
- run-on: prompts run together with gaps of 0.1-0.25 s, as people talk without pausing;
- long: single prompts longer than 8 s (short breaths inside), with pauses between.

For each it reports WER of the joined finals against the reference; the yardstick: the same
prompts each decoded alone from their exact span by rtasr's own Engine with the server's final
settings (streaming may cost at most the difference); words lost, doubled and garbled within 1 s
of a cut (a final that ended without a pause: the finals are aligned to the reference word by
word); final latency per prompt (arrival of the final holding its last word minus the moment
that word was sent); first-text latency; and retractions of `committed` words (a partial's
committed words missing from a later partial's or from the final of the same utterance).

    python benchmarks/stream_bench.py                          # 1 session, all three kinds
    python benchmarks/stream_bench.py --kinds run-on --clips 30
    python benchmarks/stream_bench.py --sessions 1,4 -- --beam-size 1   # extra serve args
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
from typing import IO, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import RATE, Clip, Span, build_stream, load_clips

from rtasr import client
from rtasr.wer import corpus_wer, normalize, score_stream

KINDS = {  # clip lengths, gaps between clips
    "paused": ((1.5, 9.0), (0.7, 2.0)),
    "run-on": ((1.5, 9.0), (0.1, 0.25)),
    "long": ((8.0, 25.0), (0.7, 2.0)),
}


@dataclass
class SessionRun:
    messages: list[client.Received] = field(default_factory=list)
    error: str | None = None


async def stream_session(url: str, audio: np.ndarray, delay_s: float, speed: float) -> SessionRun:
    """One session of `audio` at `speed` x real time, after `delay_s`."""
    await asyncio.sleep(delay_s)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    rec = await asyncio.wait_for(client.stream(url, pcm, speed=speed), len(audio) / RATE + 180)
    if rec.ready["type"] == "error":  # refused, e.g. overloaded
        return SessionRun(error=str(rec.ready["code"]))
    return SessionRun(messages=rec.messages)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# scoring ----------------------------------------------------------------------------------


def retractions(messages: list[client.Received]) -> int:
    """Committed words taken back: by a later partial or by the final of the same utterance."""
    committed: dict[int, list[str]] = {}
    count = 0
    for r in messages:
        kind = r.msg["type"]
        if kind not in ("partial", "final"):
            continue
        utt = int(r.msg["utterance"])
        before = committed.get(utt, [])
        now = normalize(r.msg["text"] if kind == "final" else r.msg["committed"])
        if now[: len(before)] != before:
            count += 1
        committed[utt] = now if kind == "partial" else []
    return count


def score(run: SessionRun, spans: list[Span], runon: bool = False,
          alone: list[str] | None = None) -> dict[str, Any]:
    finals = [r.msg for r in run.messages if r.msg["type"] == "final"]
    arrivals = [r.at for r in run.messages if r.msg["type"] == "final"]
    sc = score_stream([(s.text, s.start, s.end) for s in spans], finals, alone)
    latencies = [arrivals[sc.last_final[k]] - span.end for k, span in enumerate(spans)
                 if k in sc.last_final]
    texts = [r for r in run.messages if r.msg["type"] in ("partial", "final") and r.msg["text"]]
    first_text = []
    for span in spans:
        early = [r for r in texts if float(r.msg["start"]) <= span.start + 0.5
                 and float(r.msg["end"]) >= span.start]
        if early:
            first_text.append(early[0].at - span.start)
    return {"errors": sc.errors, "words": sc.words, "latencies": latencies,
            "first_text": first_text, "missing": len(spans) - len(sc.last_final),
            "finals": len(finals), "cuts": sc.cuts, "lost": sc.lost, "doubled": sc.doubled,
            "garbled": sc.garbled, "retractions": retractions(run.messages),
            "partials": sum(r.msg["type"] == "partial" for r in run.messages)}


# the yardstick -----------------------------------------------------------------------------


def decoded_alone(audio: np.ndarray, spans: list[Span], server_args: list[str]) -> list[str]:
    """Each prompt decoded alone from its exact span, as the server decodes a final with
    capacity to spare (one session)."""
    from rtasr.cli import build_parser, config_from_args
    from rtasr.decoding import Priority, Request
    from rtasr.engine import Engine

    config = config_from_args(build_parser().parse_args(["serve", *server_args]))
    engine = Engine(config.replace(workers=1))
    engine.start()
    try:
        texts = []
        for span in spans:
            piece = audio[int(span.start * RATE) : int(span.end * RATE)]
            request = Request(audio=piece, priority=Priority.FINAL, session="yardstick",
                              language=engine.language, beam_size=engine.beam_size,
                              word_timestamps=True)
            texts.append(engine.decode_batch([request], spare=True)[0].text)
    finally:
        engine.stop()
    return texts


# the server -------------------------------------------------------------------------------


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


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(30)


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    """The results as JSON at `path` (none: nowhere)."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))


def _drain(pipe: IO[str]) -> None:
    """Keep reading the server's log: a full pipe would block the server."""
    log = Path(__file__).parent / "results" / "server.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        for line in pipe:
            out.write(line)


async def run_level(url: str, audio: np.ndarray, spans: list[Span], sessions: int,
                    speed: float, alone: list[str] | None,
                    dump: Path | None = None) -> dict[str, Any]:
    runs = await asyncio.gather(*(stream_session(url, audio, i * 0.37, speed)
                                  for i in range(sessions)))
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text(json.dumps({
            "references": [[s.text, s.start, s.end] for s in spans], "alone": alone,
            "sessions": [[{"at": round(r.at, 3), **r.msg} for r in run.messages]
                         for run in runs]}, indent=1))
    scores = [score(r, spans, alone=alone) for r in runs]
    total = lambda key: sum(s[key] for s in scores)  # noqa: E731
    lat = [x for s in scores for x in s["latencies"]]
    first = [x for s in scores for x in s["first_text"]]
    return {
        "sessions": sessions, "refused": sum(r.error is not None for r in runs),
        "wer": total("errors") / max(1, total("words")),
        "final_p50": pct(lat, 50), "final_p95": pct(lat, 95), "final_max": max(lat, default=0),
        "first_p50": pct(first, 50), "first_p95": pct(first, 95),
        "missing": total("missing"), "utterances": len(spans) * sessions,
        "finals": total("finals"), "cuts": total("cuts"), "lost": total("lost"),
        "doubled": total("doubled"), "garbled": total("garbled"),
        "retractions": total("retractions"),
        "partials_per_final": total("partials") / max(1, total("finals")),
    }


def build(kind: str, count: int, seed: int) -> tuple[np.ndarray, list[Span], list[Clip]]:
    (lo, hi), gaps = KINDS[kind]
    clips = load_clips(count, seed=seed, min_s=lo, max_s=hi)
    audio, spans = build_stream(clips, pause_s=gaps, seed=seed + 1)
    return audio, spans, clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="benchmark a running server instead of starting one")
    ap.add_argument("--kinds", default="paused,run-on,long", help="streams to send")
    ap.add_argument("--clips", type=int, default=40, help="prompts per stream")
    ap.add_argument("--long-clips", type=int, default=20, help="prompts in the long stream")
    ap.add_argument("--seed", type=int, default=1, help="which prompts, in which order")
    ap.add_argument("--sessions", default="1", help="comma-separated concurrency levels")
    ap.add_argument("--speed", type=float, default=1.0, help="1.0 is real time")
    ap.add_argument("--no-yardstick", action="store_true", help="skip the decoded-alone WER")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--dump", type=Path,
                    help="write every message of each session here (KIND-N.json), with the "
                         "references and the decoded-alone texts")
    ap.add_argument("server_args", nargs="*", help="extra `rtasr serve` arguments (after --)")
    args = ap.parse_args()

    streams = {k: build(k, args.long_clips if k == "long" else args.clips, args.seed)
               for k in args.kinds.split(",")}
    results: dict[str, Any] = {"server_args": args.server_args, "levels": []}
    yardstick: dict[str, float] = {}
    alone: dict[str, list[str]] = {}
    for kind, (audio, spans, _) in streams.items():
        print(f"{kind}: {len(spans)} prompts, {len(audio) / RATE:.0f} s", flush=True)
        if not args.no_yardstick:
            alone[kind] = decoded_alone(audio, spans, args.server_args)
            yardstick[kind] = corpus_wer([s.text for s in spans], alone[kind])
            print(f"  decoded alone: WER {yardstick[kind]:.2%}", flush=True)
    proc, url = None, args.url
    if url is None:
        proc, url = start_server(args.server_args)
    try:
        for kind, (audio, spans, _) in streams.items():
            for n in (int(x) for x in args.sessions.split(",")):
                cpu0, wall0 = (cpu_seconds(proc.pid) if proc else 0.0), time.monotonic()
                dump = args.dump / f"{kind}-{n}.json" if args.dump else None
                level = asyncio.run(run_level(url, audio, spans, n, args.speed,
                                              alone.get(kind), dump))
                if proc:
                    level["server_cpu"] = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic()
                                                                             - wall0)
                level["stream"] = kind
                level["yardstick"] = yardstick.get(kind, float("nan"))
                results["levels"].append(level)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in level.items()}), flush=True)
    finally:
        if proc:
            stop_server(proc)
    print_table(results)
    write_json(args.json, results)


def print_table(results: dict[str, Any]) -> None:
    print("\n| stream | sessions | WER | decoded alone | lost / doubled / garbled at cuts "
          "| cuts | final p50 | final p95 | first text p50 | retractions | no final "
          "| server CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for lv in results["levels"]:
        print(f"| {lv['stream']} | {lv['sessions']} | {lv['wer']:.2%} | {lv['yardstick']:.2%} "
              f"| {lv['lost']} / {lv['doubled']} / {lv['garbled']} | {lv['cuts']} "
              f"| {lv['final_p50']:.2f} s | {lv['final_p95']:.2f} s | {lv['first_p50']:.2f} s "
              f"| {lv['retractions']} | {lv['missing']}/{lv['utterances']} "
              f"| {lv.get('server_cpu', float('nan')):.0%} |")


if __name__ == "__main__":
    main()
