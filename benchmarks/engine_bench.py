"""Engine-level measurements behind two defaults: the encoder window and the batch size.

    python benchmarks/engine_bench.py window --clips 100          # WER and time per window
    python benchmarks/engine_bench.py batch --sizes 1,4,8,16 --clips 32  # throughput per batch

`window` decodes each clip alone (as a final would be) with the encoder fed the full 30 s
window or a shorter one (`--encoder-window-s` steps), and reports WER against the Asterisk
transcripts and the mean decode time. `batch` decodes the same clips in batches of each size,
with timestamp tokens and text only (`--modes`), without and with per-session prompts
(`--prompts`), and reports decodes per second, the time a batch takes (the latency every item
in it pays), generate calls per batch, WER, and how many texts equal the request's decoded alone.
Run it where the model will serve: `--device cuda --model large-v3-turbo` on a GPU box.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from corpus import Clip, load_clips

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest, Priority
from rtasr.engine import Engine
from rtasr.eval.wer import corpus_wer


def _engine(args: argparse.Namespace, **changes: object) -> Engine:
    config = Config(model=args.model, device=args.device, compute_type=args.compute_type,
                    workers=1, cpu_threads=args.cpu_threads,
                    max_tokens_per_s=args.max_tokens_per_s,
                    timestamp_tokens=args.timestamp_tokens).replace(**changes)
    engine = Engine(config)
    engine.start()
    return engine


def _emit(args: argparse.Namespace, rows: list[dict[str, object]], row: dict[str, object]
          ) -> None:
    """A row printed, and the rows so far written to --json: a run cut short by a timeout
    (gpu_check.sh) keeps what it measured."""
    print(json.dumps(row), flush=True)
    rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _requests(clips: list[Clip], engine: Engine, beam_size: int = 0,
              words: bool = True) -> list[DecodeRequest]:
    return [DecodeRequest(audio=c.audio, priority=Priority.FINAL, session=c.name,
                    language=engine.language, beam_size=beam_size or engine.beam_size,
                    word_timestamps=words)
            for c in clips]


def window_study(args: argparse.Namespace, clips: list[Clip]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    grid = itertools.product([float(w) for w in args.windows.split(",")],
                             [int(b) for b in args.beams.split(",")])
    for window, beam in grid:
        engine = _engine(args, encoder_window_s=window)
        times, hyps = [], []
        for req in _requests(clips, engine, beam):
            t0 = time.perf_counter()
            hyps.append(engine.decode_batch([req], gate=False)[0].text)
            times.append(time.perf_counter() - t0)
        engine.stop()
        row = {"encoder_window_s": window or 30.0, "beam_size": beam,
               "wer_pct": round(100 * corpus_wer([c.text for c in clips], hyps), 2),
               "decode_mean_s": round(statistics.mean(times), 3),
               "decode_p95_s": round(sorted(times)[int(0.95 * (len(times) - 1))], 3)}
        _emit(args, rows, row)
    return rows


def _prompted(requests: list[DecodeRequest], clips: list[Clip],
              prompts: str) -> list[DecodeRequest]:
    """Per-session prompts: none; `same`, each its own of one length ("Extension 3."), which
    share a generate call; `mixed`, each the clip before's transcript as running context (of
    every length: the engine makes one generate call per length, batching.py)."""
    if prompts == "same":
        return [replace(r, initial_prompt=f"Extension {i % 10}.") for i, r in enumerate(requests)]
    if prompts == "mixed":
        return [replace(r, prompt=clips[i - 1].text) for i, r in enumerate(requests)]
    return requests


def batch_study(args: argparse.Namespace, clips: list[Clip]) -> list[dict[str, object]]:
    """Decodes/s per batch size, for each decoding mode (timestamp tokens or text only), beam
    size (--beams) and kind of per-session prompt; generate calls per batch counted."""
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, object]] = []
    for tokens in [m == "timestamps" for m in args.modes.split(",")]:
        engine = _engine(args, max_batch_size=max(sizes), timestamp_tokens=tokens,
                         encoder_window_s=args.encoder_window_s)
        calls = _count_generate(engine)
        every = clips * -(-max(sizes) // len(clips))  # at least one batch of the largest size
        texts = [c.text for c in every]
        for beam, prompts in itertools.product([int(b) for b in args.beams.split(",")],
                                               args.prompts.split(",")):
            plain = _requests(every, engine, beam, words=not args.no_word_timestamps)
            requests = _prompted(plain, every, prompts)
            alone = [engine.decode_batch([r], gate=False)[0].text for r in requests]
            for size in sizes:
                row = _batches(engine, requests, alone, texts, size, calls)
                row = {"decoding": "timestamp tokens" if tokens else "text only",
                       "prompts": prompts, "beam_size": beam, **row}
                _emit(args, rows, row)
        engine.stop()
    return rows


def _batches(engine: Engine, requests: list[DecodeRequest], alone: list[str], texts: list[str],
             size: int, calls: list[int]) -> dict[str, object]:
    batches = [list(range(i, i + size)) for i in range(0, len(requests) - size + 1, size)]
    before = calls[0]
    hyps: list[str] = []
    same = 0
    t0 = time.perf_counter()
    for batch in batches:
        out = engine.decode_batch([requests[i] for i in batch], gate=False)
        same += sum(o.text == alone[i] for o, i in zip(out, batch, strict=True))
        hyps += [o.text for o in out]
    spent = time.perf_counter() - t0
    n = len(batches) * size
    return {"batch_size": size, "decodes_per_s": round(n / spent, 2),
            "batch_s": round(spent / len(batches), 3),
            "generate_calls_per_batch": round((calls[0] - before) / len(batches), 2),
            "wer_pct": round(100 * corpus_wer(texts[:n], hyps), 2),
            "same_text_as_alone": f"{same}/{n}"}


def _count_generate(engine: Engine) -> list[int]:
    """A one-element counter of the engine's CTranslate2 generate calls."""
    count = [0]
    whisper = engine.decoder.model.model

    class Counted:
        def __getattr__(self, name: str) -> object:
            return getattr(whisper, name)

        def generate(self, *args: object, **kwargs: object) -> object:
            count[0] += 1
            return whisper.generate(*args, **kwargs)

    engine.decoder.model.model = Counted()
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=("window", "batch"))
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--seed", type=int, default=3, help="which clips (corpus.load_clips)")
    p.add_argument("--windows", default="0,20,15,10,5",
                   help="encoder windows to try, seconds (0: the full 30 s)")
    p.add_argument("--beams", default="1",
                   help="beam sizes to try with each window (batch study: with each batch size)")
    p.add_argument("--sizes", default="1,2,4,8")
    p.add_argument("--modes", default="timestamps,text",
                   help="batch study: decoding modes, timestamps and/or text (text only)")
    p.add_argument("--prompts", default="none,same,mixed",
                   help="batch study: per-session prompts, none / same (each its own, of one "
                        "length) / mixed (running context of every length)")
    p.add_argument("--encoder-window-s", type=float, default=-1.0,
                   help="for the batch study (-1: the device's default)")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--compute-type", default="auto")
    p.add_argument("--cpu-threads", type=int, default=0)
    p.add_argument("--max-tokens-per-s", type=float, default=0.0,
                   help="cap each decode (rtasr serve --max-tokens-per-s)")
    p.add_argument("--timestamp-tokens", action=argparse.BooleanOptionalAction,
                   default=Config().timestamp_tokens,
                   help="rtasr serve --timestamp-tokens")
    p.add_argument("--no-word-timestamps", action="store_true",
                   help="batch study: decode without word timestamps")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    clips = load_clips(args.clips, seed=args.seed)
    total = sum(len(c.audio) for c in clips) / 16000
    print(f"{len(clips)} clips, {total:.0f} s of speech", flush=True)
    if args.study == "window":
        window_study(args, clips)
    else:
        batch_study(args, clips)


if __name__ == "__main__":
    main()
