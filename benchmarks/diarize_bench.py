"""Speaker-label benchmark: diarization error rate of `rtasr serve --diarize` on real turns.

Builds streams of alternating turns of two and of four real readers (Debian's Asterisk prompts:
en Allison Smith, fr June Wallack, it Carlo Flora, ru IvrvoiceRU; es is Allison again, so it is
never a second speaker), and of two English voices (Allison, and English prompts' texts spoken
by flite's awb voice: `apt-get install flite`), one prompt a turn (0.8-4 s, some under 1.5 s),
0.2-1.0 s of silence between turns, and streams each in real time (100 ms frames,
diarize=true) to a server started here, once for each `--seeds` seed. Reports:

- DER: missed speech + false alarm + speaker confusion over the reference speech, in 10 ms
  frames, leaving out 0.25 s either side of every reference turn boundary (the collar), with
  the one-to-one mapping of labels to readers that fits best. The hypothesis is the finals'
  words: each run of a final's words with one speaker spans its first word's start to its
  last word's end (a final split at a speaker change gives two runs).
- turn accuracy: of the turns of 1.5 s or more, the share whose words (midpoint inside the
  turn) all carry the label mapped to the turn's reader.
- pause final p50/p95: arrival of each endpoint final minus the end of the turn that holds
  its last word, with and without --diarize (one session: each stream, and all of them
  pooled; 16 sessions: `--load-stream`, by default the English one, which tiny.en
  transcribes: on the other languages it writes long wrong English, which alone overloads 2
  cores at 16 sessions; missing: turns no final has a word in).

    python benchmarks/diarize_bench.py                  # tiny.en, all runs
    python benchmarks/diarize_bench.py --seeds 3,5,7,9  # DER over more streams
    python benchmarks/diarize_bench.py --sessions 0 --model base -- --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import RATE, ensure_corpus, load_clips, read_transcripts
from speaker_choice import synthesize
from stream_bench import SessionRun, pct, start_server, stop_server, stream_session

READERS = {"en": "allison", "fr": "june", "it": "carlo", "ru": "ru",  # never es: Allison again
           "flite:awb": "awb"}  # English from flite's awb voice (apt-get install flite)
STREAMS = {"2 speakers": ["en", "fr"], "4 speakers": ["en", "fr", "it", "ru"],
           "2 English voices": ["en", "flite:awb"]}
FRAME_S = 0.01
COLLAR_S = 0.25
LONG_TURN_S = 1.5


@dataclass(frozen=True)
class Turn:
    reader: str
    start: float
    end: float


def build(languages: list[str], turns: int, seed: int,
          gap_s: tuple[float, float] = (0.2, 1.0)) -> tuple[np.ndarray, list[Turn]]:
    """`turns` alternating turns of the readers of `languages` (no reader twice in a row)."""
    rng = random.Random(seed)
    pools = {lang: _pool(lang, seed) for lang in languages}
    parts, spans, at, last = [np.zeros(RATE // 2, np.float32)], [], 0.5, ""
    for _ in range(turns):
        lang = rng.choice([lang for lang in languages if lang != last])
        audio = pools[lang].pop()
        parts.append(audio)
        spans.append(Turn(READERS[lang], at, at + len(audio) / RATE))
        gap = rng.uniform(*gap_s)
        parts.append(np.zeros(int(gap * RATE), np.float32))
        at += len(audio) / RATE + gap
        last = lang
    parts.append(np.zeros(RATE, np.float32))
    return np.concatenate(parts), spans


def _pool(reader: str, seed: int) -> list[np.ndarray]:
    """Turns of 0.8-4 s for one reader: Asterisk prompts of a language, or (`flite:VOICE`)
    English prompts' texts spoken by a flite voice."""
    if not reader.startswith("flite:"):
        return [c.audio for c in load_clips(40, seed=seed, min_s=0.8, max_s=4.0,
                                            language=reader)]
    texts = [t for t in read_transcripts(ensure_corpus("en")).values()
             if 3 <= len(t.split()) <= 9 and not t.startswith("(")]
    random.Random(seed).shuffle(texts)
    turns = []
    for text in texts:
        audio = synthesize("flite", reader.split(":")[1], text)
        if 0.8 <= len(audio) / RATE <= 4.0:
            turns.append(audio)
        if len(turns) == 40:
            return turns
    return turns


def frames(segments: list[tuple[str, float, float]], n: int) -> list[str | None]:
    out: list[str | None] = [None] * n
    for label, start, end in segments:
        for i in range(max(0, int(start / FRAME_S)), min(n, int(end / FRAME_S))):
            out[i] = label
    return out


def spoken(finals: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """Who spoke when, by the finals' words: each run of a final's words with one speaker
    spans its first word's start to its last word's end."""
    runs: list[tuple[str, float, float]] = []
    for f in finals:
        for speaker, words in itertools.groupby(f["words"], key=lambda w: w.get("speaker")):
            span = list(words)
            runs.append((str(speaker), span[0]["start"], span[-1]["end"]))
    return runs


def der(turns: list[Turn], finals: list[dict[str, Any]]) -> dict[str, Any]:
    """DER with a 0.25 s collar, the best one-to-one label mapping; and turn accuracy."""
    end_s = max([t.end for t in turns] + [f["end"] for f in finals]) + 1
    n = int(end_s / FRAME_S)
    ref = frames([(t.reader, t.start, t.end) for t in turns], n)
    hyp = frames(spoken(finals), n)
    scored = np.ones(n, bool)
    for t in turns:
        for edge in (t.start, t.end):
            scored[max(0, int((edge - COLLAR_S) / FRAME_S)):int((edge + COLLAR_S) / FRAME_S)] = 0
    pairs = [(r, h) for r, h, s in zip(ref, hyp, scored, strict=True) if s]
    readers = sorted({t.reader for t in turns})
    labels = sorted({h for _, h in pairs if h is not None})
    overlap = {(r, h): sum(1 for p in pairs if p == (r, h)) for r in readers for h in labels}
    best: dict[str, str] = {}
    best_hits = -1
    for chosen in itertools.permutations(labels + [""] * len(readers), len(readers)):
        hits = sum(overlap.get((r, h), 0) for r, h in zip(readers, chosen, strict=True))
        if hits > best_hits:
            best_hits, best = hits, {h: r for r, h in zip(readers, chosen, strict=True) if h}
    speech = sum(r is not None for r, _ in pairs)
    missed = sum(r is not None and h is None for r, h in pairs)
    false_alarm = sum(r is None and h is not None for r, h in pairs)
    confusion = sum(r is not None and h is not None and best.get(h) != r for r, h in pairs)
    long_turns = [t for t in turns if t.end - t.start >= LONG_TURN_S]
    right = 0
    for t in long_turns:
        mine = [w for f in finals for w in f["words"]
                if t.start <= (w["start"] + w["end"]) / 2 <= t.end]
        right += bool(mine) and all(best.get(str(w.get("speaker"))) == t.reader for w in mine)
    return {"der": (missed + false_alarm + confusion) / max(1, speech),
            "missed": missed / max(1, speech), "false_alarm": false_alarm / max(1, speech),
            "confusion": confusion / max(1, speech), "speech_s": speech * FRAME_S,
            "long_turns": len(long_turns), "long_turns_right": right,
            "labels": len(labels), "readers": len(readers)}


def latencies(turns: list[Turn], run: SessionRun) -> tuple[list[float], int]:
    """Each endpoint final's wait after the end of the turn holding its last word; and the
    turns no final has a word in."""
    waits = []
    finals = [r for r in run.messages if r.msg["type"] == "final"]
    for r in finals:
        if not r.msg["endpoint"] or not r.msg["words"]:
            continue
        last = r.msg["words"][-1]["end"]
        turn = min(turns, key=lambda t: 0 if t.start <= last <= t.end + 0.3
                   else min(abs(last - t.start), abs(last - t.end)))
        waits.append(r.at - turn.end)
    mids = [(w["start"] + w["end"]) / 2 for r in finals for w in r.msg["words"]]
    covered = sum(any(t.start - 0.3 <= mid <= t.end + 0.3 for mid in mids) for t in turns)
    return waits, len(turns) - covered


async def run(url: str, audio: np.ndarray, turns: list[Turn], sessions: int,
              diarize: bool) -> dict[str, Any]:
    query = "diarize=true" if diarize else ""
    runs = await asyncio.gather(*(stream_session(url, audio, i * 0.37, 1.0, query)
                                  for i in range(sessions)))
    waits, missing = [], 0
    for r in runs:
        w, m = latencies(turns, r)
        waits += w
        missing += m
    result: dict[str, Any] = {
        "sessions": sessions, "refused": sum(r.error is not None for r in runs),
        "pause_final_p50": pct(waits, 50), "pause_final_p95": pct(waits, 95),
        "missing_turns": missing, "turns": len(turns) * sessions,
        "pause_final_waits": [round(w, 3) for w in waits]}
    if diarize:
        scores = [der(turns, [m.msg for m in r.messages if m.msg["type"] == "final"])
                  for r in runs if r.error is None]
        result["der"] = float(np.mean([s["der"] for s in scores]))
        result["first_session"] = scores[0]
    return result


def many(url: str, audio: np.ndarray, turns: list[Turn], sessions: int,
         diarize: bool) -> dict[str, Any]:
    """The many-session run; a session the server or the client gave up on (an overloaded
    machine) is reported, not raised, so the other runs' figures still come out."""
    try:
        return asyncio.run(run(url, audio, turns, sessions, diarize))
    except Exception as e:  # e.g. a keepalive ping timeout
        return {"sessions": sessions, "failed": repr(e)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=20, help="turns per stream")
    ap.add_argument("--seeds", default="3",
                    help="streams built with these seeds, each scored (comma-separated)")
    ap.add_argument("--model", default=None,
                    help="rtasr serve --model (default: the bundled tiny.en, which the targets "
                         "name: DER needs no words right)")
    ap.add_argument("--sessions", type=int, default=16, help="the many-session run (0: none)")
    ap.add_argument("--streams", default=",".join(STREAMS),
                    help="the one-session streams to score (comma-separated; none: only the "
                         "many-session run)")
    ap.add_argument("--load-stream", default="2 English voices", choices=list(STREAMS),
                    help="the stream of the many-session run")
    ap.add_argument("--gaps", default="0.2,1.0", help="silence between turns, min,max (s)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("serve_args", nargs="*", help="after --: extra rtasr serve options")
    args = ap.parse_args()
    lo, hi = (float(x) for x in args.gaps.split(","))
    seeds = [int(x) for x in args.seeds.split(",")]
    scored = [] if args.streams == "none" else args.streams.split(",")
    streams = {(name, seed): build(langs, args.turns, seed + k, (lo, hi))
               for seed in seeds for k, (name, langs) in enumerate(STREAMS.items())
               if name in scored or (name == args.load_stream and seed == seeds[0])}
    results: dict[str, Any] = {"model": args.model or "tiny.en"}
    serve = [*(["--model", args.model] if args.model else []), *args.serve_args]
    for diarize in (True, False):  # the same streams with speakers, then without
        without = "" if diarize else ", no --diarize"
        proc, url = start_server([*serve, *(["--diarize"] if diarize else [])])
        try:
            for (name, seed), (audio, turns) in streams.items():
                if name not in scored:
                    continue
                results[f"{name}, seed {seed}{without}"] = asyncio.run(
                    run(url, audio, turns, 1, diarize))
            if args.sessions:
                audio, turns = streams[(args.load_stream, seeds[0])]
                results[f"{args.load_stream}, {args.sessions} sessions{without}"] = many(
                    url, audio, turns, args.sessions, diarize)
        finally:
            stop_server(proc)
    results["summary"] = summary(results, scored, seeds)
    results["summary"]["one session, every stream"] = pooled(results, scored, seeds)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def summary(results: dict[str, Any], names: list[str], seeds: list[int]) -> dict[str, Any]:
    """Each stream's DER over the seeds (mean, and each), and its long turns right."""
    out: dict[str, Any] = {}
    for name in names:
        runs = [results[f"{name}, seed {seed}"] for seed in seeds]
        scored = [r["first_session"] for r in runs]
        out[name] = {"der_mean": float(np.mean([r["der"] for r in runs])),
                     "der": [round(r["der"], 4) for r in runs],
                     "long_turns_right": f"{sum(s['long_turns_right'] for s in scored)}"
                                         f"/{sum(s['long_turns'] for s in scored)}"}
    return out


def pooled(results: dict[str, Any], names: list[str], seeds: list[int]) -> dict[str, Any]:
    """Pause final p50/p95 at one session over every scored stream, with and without
    --diarize (the same streams, the same server otherwise)."""
    out: dict[str, Any] = {}
    for without in ("", ", no --diarize"):
        waits = [w for name in names for seed in seeds
                 for w in results[f"{name}, seed {seed}{without}"]["pause_final_waits"]]
        key = "without --diarize" if without else "with --diarize"
        out[key] = {"pause_final_p50": pct(waits, 50), "pause_final_p95": pct(waits, 95),
                    "finals": len(waits)}
    return out


if __name__ == "__main__":
    main()
