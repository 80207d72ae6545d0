"""Replay a benchmark stream through a Session and the real model, with no server and no clock.

For tuning the streaming policy (session.py, cuts.py) on many words quickly: the stream of
stream_bench.py (the same builder, seeds and references) is fed to a `Session` in 20 ms
frames on a simulated clock; each decode job is run on a real engine when its result is due,
a fixed `--decode-s` after it was asked for (one at a time per session, as the server runs
them). The words depend only on the audio each decode hears, so a replay gives the words a
real-time stream would give, except where real decode times would have moved a partial or a
cut (stream_bench.py measures those, and latency, for real). The yardstick's texts are cached
in benchmarks/.data/yardstick-*.json.

    python benchmarks/replay.py --seeds 1,2,3                  # the server's defaults
    python benchmarks/replay.py --seeds 1,2,3 -- --cut-context-chars 100
    python benchmarks/replay.py --seeds 1,2 --finals a.jsonl   # then diff two builds' files
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import heapq
import json
import sys
import time
from typing import Any

import numpy as np
from corpus import DATA
from stream_bench import build

from rtasr.cli import build_parser, config_from_args
from rtasr.config import SAMPLE_RATE_HZ
from rtasr.core.actions import Cancel, DecodeJob
from rtasr.core.protocol import Final, StreamParams
from rtasr.core.session import Session
from rtasr.engine import Engine, effective_config
from rtasr.eval import yardstick
from rtasr.eval.wer import errors_by_reference, normalize, score_stream

FRAME = SAMPLE_RATE_HZ // 50


def replay(engine: Engine, config: Any, audio: np.ndarray, language: str | None,
           decode_s: float) -> tuple[list[Final], list[float]]:
    """The finals of one session fed `audio` at real time on a simulated clock, and the
    simulated time each arrived."""
    session = Session(config, StreamParams(language=language), "replay", language)
    pending: list[tuple[float, int, DecodeJob]] = []  # (due, order, job)
    cancelled: set[int] = set()
    finals: list[Final] = []
    arrivals: list[float] = []
    order = 0

    def act(actions: list[Any], now: float) -> None:
        nonlocal order
        for a in actions:
            if isinstance(a, DecodeJob):
                order += 1
                heapq.heappush(pending, (now + decode_s, order, a))
            elif isinstance(a, Cancel):
                cancelled.add(id(a.job))
            elif isinstance(a, Final):
                finals.append(a)
                arrivals.append(now)

    def due(now: float) -> None:
        while pending and pending[0][0] <= now:
            at, _, job = heapq.heappop(pending)
            if id(job) in cancelled:
                act(session.on_result(job, None), at)
                continue
            # one session on its own engine: a final always finds capacity to spare
            result = engine.decode_batch([job.request], spare=job.kind != "partial")[0]
            act(session.on_result(job, result), at)

    for i in range(0, len(audio), FRAME):
        now = (i + FRAME) / SAMPLE_RATE_HZ
        pcm = (np.clip(audio[i : i + FRAME], -1, 1) * 32767).astype("<i2").tobytes()
        act(session.feed(pcm), now)
        due(now)
    now = len(audio) / SAMPLE_RATE_HZ
    act(session.end(), now)
    while pending:
        due(pending[0][0])
    return finals, arrivals


def cached_yardstick(engine: Engine, config: Any, audio: np.ndarray, spans: list[Any],
                     language: str | None, key: str) -> list[str]:
    path = DATA / f"yardstick-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"
    if path.exists():
        return list(json.loads(path.read_text()))
    refs = [yardstick.Reference(s.text, s.start, s.end) for s in spans]
    texts = yardstick.decode(engine, audio, refs, config, language=language)
    path.write_text(json.dumps(texts))
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", default="1", help="comma-separated stream seeds")
    ap.add_argument("--kind", default="mixed", help="mixed, paused, run-on or long")
    ap.add_argument("--clips", type=int, default=40, help="short prompts per stream")
    ap.add_argument("--long-clips", type=int, default=8, help="long prompts per stream")
    ap.add_argument("--language", default="en")
    ap.add_argument("--detect", action="store_true", help="the session is given no language")
    ap.add_argument("--decode-s", type=float, default=0.2,
                    help="simulated seconds from a decode's request to its result")
    ap.add_argument("--show", action="store_true", help="print each utterance the stream "
                    "gets wrong where the yardstick does not")
    ap.add_argument("--finals", metavar="FILE", help="write every final (seed, start, end, "
                    "text) to FILE as JSON lines, to compare two builds word for word")
    ap.add_argument("server_args", nargs="*", help="`rtasr serve` arguments (after --)")
    args = ap.parse_args()
    dump = open(args.finals, "w") if args.finals else None  # noqa: SIM115

    config = effective_config(config_from_args(build_parser().parse_args(
        ["serve", *args.server_args])))
    engine = Engine(config.replace(workers=1, max_batch_size=1))
    engine.start()
    totals = {"words": 0, "stream": 0, "yardstick": 0}
    latency: dict[str, list[float]] = {"pause": [], "run-on": []}
    by_kind: dict[str, dict[str, int]] = {}
    t0 = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        audio, spans = build(args.kind, args.clips, args.long_clips, seed, args.language)
        key = f"{args.kind}/{args.clips}/{args.long_clips}/{seed}/{args.language}/{config.model}"
        yard = cached_yardstick(engine, config, audio, spans, args.language, key)
        finals, arrivals = replay(engine, config, audio, None if args.detect else args.language,
                        args.decode_s)
        for f in finals if dump else ():
            print(json.dumps({"seed": seed, "start": f.start, "end": f.end, "text": f.text}),
                  file=dump)
        texts = [s.text for s in spans]
        e_yard = errors_by_reference(texts, yard)
        e_stream = errors_by_reference(texts, [f.text for f in finals])
        sc = score_stream([(s.text, s.start, s.end) for s in spans],
                          [{"text": f.text, "start": f.start, "end": f.end,
                            "words": [dataclasses.asdict(w) for w in f.words]} for f in finals])
        for k, span in enumerate(spans):
            if k in sc.last_final:
                gap = spans[k + 1].start - span.end if k + 1 < len(spans) else 9.0
                latency["pause" if gap >= 0.7 else "run-on"].append(
                    arrivals[sc.last_final[k]] - span.end)
        for k, span in enumerate(spans):
            n = len(normalize(span.text))
            for tally in (totals, by_kind.setdefault(span.kind or "all",
                                                     dict.fromkeys(totals, 0))):
                tally["words"] += n
                tally["stream"] += e_stream[k]
                tally["yardstick"] += e_yard[k]
            if args.show and e_stream[k] > e_yard[k]:
                over = [f for f in finals if f.start < span.end and f.end > span.start]
                print(f"seed {seed} #{k} {span.kind} +{e_stream[k] - e_yard[k]}\n"
                      f"  ref  {span.text}\n  yard {yard[k]}")
                for f in over:
                    print(f"  {f.start:7.2f}-{f.end:7.2f} {'E' if f.endpoint else 'c'} {f.text}")
        print(f"seed {seed}: stream {sum(e_stream)} errors, yardstick {sum(e_yard)}, "
              f"{len(finals)} finals ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    engine.stop()
    if dump:
        dump.close()

    def line(name: str, t: dict[str, int]) -> str:
        w = max(1, t["words"])
        return (f"| {name} | {t['words']} | {t['stream']} | {t['yardstick']} | "
                f"{100 * t['stream'] / w:.2f}% | {100 * t['yardstick'] / w:.2f}% | "
                f"{100 * (t['stream'] - t['yardstick']) / w:+.2f} |")

    print(f"replay {' '.join(args.server_args) or '(defaults)'}, seeds {args.seeds}")
    print("| kind | words | stream errors | yardstick errors | stream | yardstick | gap |")
    print("|---|---|---|---|---|---|---|")
    for kind, t in sorted(by_kind.items()):
        print(line(kind, t))
    paused = {k: sum(t[k] for n, t in by_kind.items() if n != "run-on") for k in totals}
    print(line("paused (all but run-on)", paused))
    print(line("**all**", totals))
    for gap, values in latency.items():
        v = np.array(values)
        print(f"{gap} final latency (simulated): p50 {np.percentile(v, 50):.2f} s, "
              f"p95 {np.percentile(v, 95):.2f} s, max {v.max():.2f} s")


if __name__ == "__main__":
    main()
