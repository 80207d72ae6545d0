"""Streaming benchmark: is every spoken word in exactly one final, and how soon?

Builds streams from Debian's Asterisk prompts (real recorded speech) and sends each in real
time, in 100 ms frames, to `rtasr serve` (started here, or --url):

- mixed (the default), like real speech: turns of a few prompts with sentence pauses of
  0.3-1.0 s inside (one utterance each), run-on stretches (prompts 0.1-0.25 s apart, each its
  own utterance), long prompts of 8-25 s, single prompts; 1-2 s between turns;
- paused: prompts with pauses of 0.7-2.0 s between them;
- run-on: prompts run together with gaps of 0.1-0.25 s;
- long: single prompts longer than 8 s (short breaths inside), with pauses between.

For each it reports, side by side: WER of the joined finals; the yardstick (rtasr.eval.yardstick:
each utterance decoded whole with the margins a final gets by faster-whisper's file
transcription, beam 5, scored by the same one alignment); faster-whisper's transcription of
the whole stream; words lost, doubled and
garbled within 1 s of a cut; final latency after a pause and inside run-on speech (arrival of
the final holding an utterance's last word minus the moment that word was sent); first-text
latency; retractions of `committed` words. For the first session it splits the errors against
the yardstick by cause (attribution.py) and by turn kind.

    python benchmarks/stream_bench.py                          # 1 session, the mixed stream
    python benchmarks/stream_bench.py --kinds run-on --clips 30
    python benchmarks/stream_bench.py --language fr --detect -- --model base
    python benchmarks/stream_bench.py --sessions 1,4 -- --beam-size 1   # extra serve args
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
import attribution
from corpus import RATE, Span, build_stream, build_turns, load_clips

from rtasr import client
from rtasr.eval import yardstick
from rtasr.eval.wer import joined_wer, normalize, score_stream

KINDS = {  # clip lengths, gaps between clips
    "paused": ((1.5, 9.0), (0.7, 2.0)),
    "run-on": ((1.5, 9.0), (0.1, 0.25)),
    "long": ((8.0, 25.0), (0.7, 2.0)),
}


@dataclass
class SessionRun:
    messages: list[client.Received] = field(default_factory=list)
    error: str | None = None


async def stream_session(url: str, audio: np.ndarray, delay_s: float, speed: float,
                         query: str = "") -> SessionRun:
    """One session of `audio` at `speed` x real time, after `delay_s`."""
    await asyncio.sleep(delay_s)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    rec = await asyncio.wait_for(client.stream(url, pcm, speed=speed, query=query),
                                 len(audio) / RATE + 180)
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
    # a final after a pause (the next utterance >= 0.7 s later) or inside run-on speech
    after = [nxt.start - span.end >= 0.7 for span, nxt in itertools.pairwise(spans)]
    after.append(True)
    by_gap: dict[str, list[float]] = {"pause": [], "run-on": []}
    for k, span in enumerate(spans):
        if k in sc.last_final:
            by_gap["pause" if after[k] else "run-on"].append(arrivals[sc.last_final[k]] - span.end)
    texts = [r for r in run.messages if r.msg["type"] in ("partial", "final") and r.msg["text"]]
    first_text = []
    for span in spans:
        early = [r for r in texts if float(r.msg["start"]) <= span.start + 0.5
                 and float(r.msg["end"]) >= span.start]
        if early:
            first_text.append(early[0].at - span.start)
    return {"errors": sc.errors, "words": sc.words, "latencies": latencies,
            "latency_pause": by_gap["pause"], "latency_runon": by_gap["run-on"],
            "first_text": first_text, "missing": len(spans) - len(sc.last_final),
            "finals": len(finals), "cuts": sc.cuts, "lost": sc.lost, "doubled": sc.doubled,
            "garbled": sc.garbled, "retractions": retractions(run.messages),
            "partials": sum(r.msg["type"] == "partial" for r in run.messages)}


# the yardstick -----------------------------------------------------------------------------


class References:
    """The decodes a stream is measured against (rtasr.eval.yardstick, attribution.py): the
    server's effective config, the yardstick's engine and one with the server's own
    settings, kept until the stream's finals are in."""

    def __init__(self, server_args: list[str], language: str | None) -> None:
        from rtasr.cli import build_parser, config_from_args
        from rtasr.engine import effective_config

        self.config = effective_config(config_from_args(build_parser().parse_args(
            ["serve", *server_args])))
        self.language = language or self.config.language
        # one engine for both: the yardstick's transcription and the server's own decode
        self.engine = yardstick.engine(self.config)
        self.language = self.language or ("en" if not self.engine.multilingual else None)

    def stop(self) -> None:
        self.engine.stop()

    def whole(self, audio: np.ndarray, spans: list[Span], *, served: bool = False) -> list[str]:
        """Each utterance decoded whole with the server's margins: by the yardstick or,
        `served`, in one decode as the server decodes a final (its window and beam)."""
        from rtasr.core.engine_api import DecodeRequest, Priority

        refs = [yardstick.Reference(s.text, s.start, s.end) for s in spans]
        if not served:
            return yardstick.decode(self.engine, audio, refs, self.config,
                                    language=self.language)
        return [self.engine.decode_batch([DecodeRequest(
            audio=audio[lo:hi], priority=Priority.FINAL, session="whole",
            language=self.language, beam_size=self.config.beam_size,
            word_timestamps=True)])[0].text
            for lo, hi in yardstick.spans(refs, self.config, len(audio))]

    def pieces(self, audio: np.ndarray, finals: list[dict[str, Any]]) -> list[str]:
        """Each final's own span decoded alone with the server's settings, in its language."""
        from rtasr.core.engine_api import DecodeRequest, Priority

        return [self.engine.decode_batch([DecodeRequest(
            audio=audio[round(f["start"] * RATE) : round(f["end"] * RATE)],
            priority=Priority.FINAL, session="pieces", language=f.get("language"),
            beam_size=self.config.beam_size, word_timestamps=True)])[0].text for f in finals]

    def offline(self, audio: np.ndarray) -> str:
        """The whole stream through faster-whisper's own transcribe, its defaults (beam 5,
        30 s windows, the previous text as the prompt)."""
        return self.engine.transcribe_whole(audio, language=self.language)


# the server -------------------------------------------------------------------------------


def cpu_seconds(pid: int, main_thread: bool = False) -> float:
    """CPU seconds a process has used, all its threads; `main_thread`: its first thread's only
    (a server's event loop)."""
    stat = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(extra: list[str], launcher: tuple[str, ...] = ("-m", "rtasr"),
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`rtasr serve` on a free port; its log goes on to benchmarks/results/server.log.
    `launcher`: what runs it after `python` (benchmarks/server_probe.py: with a memory probe)."""
    cmd = [sys.executable, *launcher, "serve", "--port", "0", "--host", "127.0.0.1", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})
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
                    speed: float, alone: list[str] | None, query: str = "",
                    dump: Path | None = None) -> tuple[dict[str, Any], list[SessionRun]]:
    runs = await asyncio.gather(*(stream_session(url, audio, i * 0.37, speed, query)
                                  for i in range(sessions)))
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text(json.dumps({
            "references": [[s.text, s.start, s.end, s.kind] for s in spans], "alone": alone,
            "sessions": [[{"at": round(r.at, 3), **r.msg} for r in run.messages]
                         for run in runs]}, indent=1))
    scores = [score(r, spans, alone=alone) for r in runs]
    total = lambda key: sum(s[key] for s in scores)  # noqa: E731
    joined = lambda key: [x for s in scores for x in s[key]]  # noqa: E731
    lat, pause, runon = joined("latencies"), joined("latency_pause"), joined("latency_runon")
    first = joined("first_text")
    return {
        "sessions": sessions, "refused": sum(r.error is not None for r in runs),
        "wer": total("errors") / max(1, total("words")),
        "final_p50": pct(lat, 50), "final_p95": pct(lat, 95), "final_max": max(lat, default=0),
        "pause_final_p50": pct(pause, 50), "pause_final_p95": pct(pause, 95),
        "runon_final_p95": pct(runon, 95),
        "first_p50": pct(first, 50), "first_p95": pct(first, 95),
        "missing": total("missing"), "utterances": len(spans) * sessions,
        "finals": total("finals"), "cuts": total("cuts"), "lost": total("lost"),
        "doubled": total("doubled"), "garbled": total("garbled"),
        "retractions": total("retractions"),
        "partials_per_final": total("partials") / max(1, total("finals")),
    }, runs


def build(kind: str, count: int, long_count: int, seed: int,
          language: str = "en") -> tuple[np.ndarray, list[Span]]:
    """The stream of one kind: `count` prompts (`long_count` long ones for mixed and long)."""
    if kind == "mixed":
        short = load_clips(count, seed=seed, min_s=1.5, max_s=8.0, language=language)
        long = load_clips(long_count, seed=seed, min_s=8.0, max_s=25.0, language=language)
        return build_turns(short, long, seed=seed + 1)
    (lo, hi), gaps = KINDS[kind]
    clips = load_clips(long_count if kind == "long" else count, seed=seed, min_s=lo, max_s=hi,
                       language=language)
    return build_stream(clips, pause_s=gaps, seed=seed + 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="benchmark a running server instead of starting one")
    ap.add_argument("--kinds", default="mixed", help="streams to send: mixed, paused, run-on, "
                    "long (comma-separated)")
    ap.add_argument("--clips", type=int, default=40, help="short prompts per stream")
    ap.add_argument("--long-clips", type=int, default=8, help="long prompts (8-25 s) per stream")
    ap.add_argument("--seed", type=int, default=1, help="which prompts, in which order")
    ap.add_argument("--sessions", default="1", help="comma-separated concurrency levels")
    ap.add_argument("--speed", type=float, default=1.0, help="1.0 is real time")
    ap.add_argument("--language", default="en", help="the prompts' language (en es fr it ru; "
                    "others than en want -- --model base)")
    ap.add_argument("--detect", action="store_true",
                    help="send no language: the server detects it (the yardstick is given it)")
    ap.add_argument("--no-yardstick", action="store_true", help="skip the reference decodes")
    ap.add_argument("--no-offline", action="store_true",
                    help="skip faster-whisper's transcribe of the whole stream")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--dump", type=Path,
                    help="write every message of each session here (KIND-N.json), with the "
                         "references and the yardstick's texts")
    ap.add_argument("server_args", nargs="*", help="extra `rtasr serve` arguments (after --)")
    args = ap.parse_args()

    query = "" if args.detect else f"language={args.language}"
    streams = {k: build(k, args.clips, args.long_clips, args.seed, args.language)
               for k in args.kinds.split(",")}
    results: dict[str, Any] = {"server_args": args.server_args, "language": args.language,
                               "detect": args.detect, "levels": []}
    refs = None if args.no_yardstick else References(args.server_args, args.language)
    measured: dict[str, dict[str, Any]] = {}
    for kind, (audio, spans) in streams.items():
        print(f"{kind}: {len(spans)} utterances, {len(audio) / RATE:.0f} s", flush=True)
        if refs is None:
            continue
        t = time.perf_counter()
        m = measured[kind] = {"yardstick": refs.whole(audio, spans),
                              "whole": refs.whole(audio, spans, served=True)}
        texts = [s.text for s in spans]
        m["yardstick_wer"] = joined_wer(texts, m["yardstick"])
        m["whole_wer"] = joined_wer(texts, m["whole"])
        if not args.no_offline:
            m["offline_wer"] = joined_wer(texts, [refs.offline(audio)])
        print(f"  yardstick {m['yardstick_wer']:.2%}, whole with the server's settings "
              f"{m['whole_wer']:.2%}, offline faster-whisper "
              f"{m.get('offline_wer', float('nan')):.2%} ({time.perf_counter() - t:.0f} s)",
              flush=True)
    proc, url = None, args.url
    if url is None:
        proc, url = start_server(args.server_args)
    try:
        for kind, (audio, spans) in streams.items():
            m = measured.get(kind, {})
            for n in (int(x) for x in args.sessions.split(",")):
                cpu0, wall0 = (cpu_seconds(proc.pid) if proc else 0.0), time.monotonic()
                dump = args.dump / f"{kind}-{n}.json" if args.dump else None
                level, runs = asyncio.run(run_level(url, audio, spans, n, args.speed,
                                                    m.get("yardstick"), query, dump))
                if proc:
                    level["server_cpu"] = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic()
                                                                             - wall0)
                level["stream"] = kind
                level["yardstick"] = m.get("yardstick_wer", float("nan"))
                level["offline"] = m.get("offline_wer", float("nan"))
                if refs is not None and runs[0].error is None:
                    finals = [r.msg for r in runs[0].messages if r.msg["type"] == "final"]
                    level["attribution"] = attribution.attribute(
                        spans, finals, m["yardstick"], m["whole"], refs.pieces(audio, finals),
                        args.language if args.detect else None)
                results["levels"].append(level)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in level.items()}), flush=True)
    finally:
        if proc:
            stop_server(proc)
        if refs is not None:
            refs.stop()
    print_table(results)
    write_json(args.json, results)


def print_table(results: dict[str, Any]) -> None:
    print("\n| stream | sessions | WER | yardstick | offline | lost / doubled / garbled at cuts "
          "| cuts | pause final p50 / p95 | run-on final p95 | first text p50 | retractions "
          "| no final | server CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for lv in results["levels"]:
        print(f"| {lv['stream']} | {lv['sessions']} | {lv['wer']:.2%} | {lv['yardstick']:.2%} "
              f"| {lv['offline']:.2%} | {lv['lost']} / {lv['doubled']} / {lv['garbled']} "
              f"| {lv['cuts']} | {lv['pause_final_p50']:.2f} / {lv['pause_final_p95']:.2f} s "
              f"| {lv['runon_final_p95']:.2f} s | {lv['first_p50']:.2f} s "
              f"| {lv['retractions']} | {lv['missing']}/{lv['utterances']} "
              f"| {lv.get('server_cpu', float('nan')):.0%} |")
    for lv in results["levels"]:
        if "attribution" not in lv:
            continue
        at = lv["attribution"]
        print(f"\n{lv['stream']}, {lv['sessions']} session(s), session 0: by turn kind")
        print("| kind | words | WER | yardstick |\n|---|---|---|---|")
        for kind, k in at["kinds"].items():
            print(f"| {kind} | {k['words']} | {k['stream'] / max(1, k['words']):.2%} "
                  f"| {k['yardstick'] / max(1, k['words']):.2%} |")
        print("\nwhere the words go wrong (errors against the yardstick, by cause):")
        print(attribution.table(at))
        if results.get("detect"):
            print(f"errors in utterances with a wrongly detected language: "
                  f"{at['wrong_language_errors']}")


if __name__ == "__main__":
    main()
