"""Multilingual streaming benchmark: five languages and translation, real speech, real time.

For each language (en, es, fr, it, ru) a stream of Debian's Asterisk prompts with pauses of
0.7-2.0 s goes in real time to `rtasr serve --model base` (started here) with no `language`
given, as stream_bench.py streams English. Reported per language:

- WER of the joined finals (and CER, on the same normalized text, for Russian, where one
  case ending makes a whole word wrong: CER is the fairer figure there);
- language detection per utterance: the prompts whose finals all carry the right language
  (the session's vote included, as a client would get it);
- final latency p50/p95 (arrival of the final holding a prompt's last word minus the moment
  that word was sent);
- the yardstick (rtasr.eval.yardstick): each prompt decoded whole with the margins a final gets,
  by faster-whisper's file transcription, its language given.

Translation: the es/fr/it/ru streams again with `task=translate` (language given), scored
against the English prompt of the same name (the sets share names): WER after normalization,
a rough figure, since a correct translation need not use the English prompt's words.

    python benchmarks/multilingual_bench.py --clips 20          # ~15 min of real time
    python benchmarks/multilingual_bench.py --clips 3 --languages es,fr   # a dry run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import LANGUAGES, RATE, Clip, Span, build_stream, ensure_corpus, load_clips
from corpus import read_transcripts as read_texts
from stream_bench import SessionRun, pct, score, start_server, stop_server, write_json

from rtasr import client
from rtasr.eval import yardstick
from rtasr.eval.wer import edit_distance, joined_wer, normalize


def clips_for(language: str, count: int, seed: int, english: dict[str, str]) -> list[Clip]:
    """Prompts with an English counterpart of the same name (for translation)."""
    pool = load_clips(count * 4, language=language, seed=seed, min_s=1.5, max_s=9.0)
    return [c for c in pool if c.name in english][:count]


async def stream(url: str, audio: np.ndarray, query: str) -> SessionRun:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    rec = await asyncio.wait_for(client.stream(url, pcm, speed=1.0, query=query),
                                 len(audio) / RATE + 180)
    if rec.ready["type"] == "error":
        return SessionRun(error=f"{rec.ready['code']}: {rec.ready['message']}")
    return SessionRun(messages=rec.messages)


def detected_right(run: SessionRun, spans: list[Span], language: str) -> tuple[int, int]:
    """(prompts whose overlapping finals all say `language`, prompts with any final)."""
    finals = [r.msg for r in run.messages if r.msg["type"] == "final"]
    right = heard = 0
    for span in spans:
        over = [f for f in finals if f["start"] < span.end and f["end"] > span.start]
        if over:
            heard += 1
            right += all(f["language"] == language for f in over)
    return right, heard


def cer(references: list[str], hypothesis: str) -> float:
    ref = " ".join(w for r in references for w in normalize(r))
    hyp = " ".join(normalize(hypothesis))
    return edit_distance(list(ref), list(hyp)) / max(1, len(ref))


def decoded_alone(audio: np.ndarray, spans: list[Span], language: str,
                  server_args: list[str], task: str = "transcribe") -> list[str]:
    """The yardstick: each prompt decoded (or translated) whole, its language given."""
    from rtasr.cli import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(["serve", *server_args]))
    engine = yardstick.engine(config)
    try:
        return yardstick.decode(engine, audio, [yardstick.Reference(s.text, s.start, s.end)
                                                for s in spans], engine.config,
                                language=language, task=task)  # type: ignore[arg-type]
    finally:
        engine.stop()


def measure(url: str, language: str, audio: np.ndarray, spans: list[Span],
            alone: list[str] | None) -> dict[str, Any]:
    run = asyncio.run(stream(url, audio, ""))
    if run.error:
        return {"language": language, "error": run.error}
    sc = score(run, spans, alone=alone)
    right, heard = detected_right(run, spans, language)
    text = " ".join(r.msg["text"] for r in run.messages if r.msg["type"] == "final")
    return {
        "language": language, "prompts": len(spans),
        "wer": sc["errors"] / max(1, sc["words"]),
        "cer": cer([s.text for s in spans], text),
        "detected": right / max(1, heard), "no_final": len(spans) - heard,
        "final_p50": pct(sc["latencies"], 50), "final_p95": pct(sc["latencies"], 95),
        "yardstick": joined_wer([s.text for s in spans], alone) if alone else float("nan"),
    }


def translate(url: str, language: str, audio: np.ndarray, spans: list[Span],
              english: dict[str, str], names: list[str],
              alone: list[str] | None = None) -> dict[str, Any]:
    run = asyncio.run(stream(url, audio, f"language={language}&task=translate"))
    if run.error:
        return {"language": language, "error": run.error}
    targets = [Span(english[n], s.start, s.end) for n, s in zip(names, spans, strict=True)]
    sc = score(run, targets)
    return {"language": language, "prompts": len(spans),
            "wer_vs_english": sc["errors"] / max(1, sc["words"]),
            "yardstick": joined_wer([t.text for t in targets], alone) if alone
            else float("nan"),
            "final_p50": pct(sc["latencies"], 50)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--languages", default=",".join(LANGUAGES))
    ap.add_argument("--clips", type=int, default=20, help="prompts per language")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-yardstick", action="store_true")
    ap.add_argument("--no-translate", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("server_args", nargs="*", help="extra `rtasr serve` arguments (after --)")
    args = ap.parse_args()
    server_args = ["--model", "base", *args.server_args]
    english = read_texts(ensure_corpus("en"), "en")
    streams = {}
    for language in args.languages.split(","):
        clips = clips_for(language, args.clips, args.seed, english)
        audio, spans = build_stream(clips, pause_s=(0.7, 2.0), seed=args.seed + 1)
        alone = None if args.no_yardstick else decoded_alone(audio, spans, language,
                                                             server_args)
        streams[language] = (audio, spans, [c.name for c in clips], alone)
        print(f"{language}: {len(spans)} prompts, {len(audio) / RATE:.0f} s", flush=True)
    results: dict[str, Any] = {"server_args": server_args, "transcribe": [], "translate": []}
    proc, url = start_server(server_args)
    try:
        for language, (audio, spans, _, alone) in streams.items():
            results["transcribe"].append(measure(url, language, audio, spans, alone))
            print(json.dumps(results["transcribe"][-1]), flush=True)
        for language, (audio, spans, names, _) in streams.items():
            if language != "en" and not args.no_translate:
                translated = None if args.no_yardstick else decoded_alone(
                    audio, spans, language, server_args, task="translate")
                results["translate"].append(translate(url, language, audio, spans, english,
                                                      names, translated))
                print(json.dumps(results["translate"][-1]), flush=True)
    finally:
        stop_server(proc)
    print_table(results)
    write_json(args.json, results)


def print_table(results: dict[str, Any]) -> None:
    print("\n| language | prompts | WER | CER | decoded alone (WER) | detected right "
          "| final p50 | final p95 |\n|---|---|---|---|---|---|---|---|")
    for r in results["transcribe"]:
        if "error" in r:
            print(f"| {r['language']} | refused: {r['error']} |")
            continue
        print(f"| {r['language']} | {r['prompts']} | {r['wer']:.1%} | {r['cer']:.1%} "
              f"| {r['yardstick']:.1%} | {r['detected']:.0%} | {r['final_p50']:.2f} s "
              f"| {r['final_p95']:.2f} s |")
    if results["translate"]:
        print("\n| translated from | prompts | WER vs the English prompt | yardstick "
              "| final p50 |\n|---|---|---|---|---|")
        for r in results["translate"]:
            if "error" not in r:
                print(f"| {r['language']} | {r['prompts']} | {r['wer_vs_english']:.1%} "
                      f"| {r['yardstick']:.1%} | {r['final_p50']:.2f} s |")


if __name__ == "__main__":
    main()
