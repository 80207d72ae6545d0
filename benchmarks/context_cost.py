"""What hearing the utterance before costs a decode (--context-s), and what forcing its text
as the decoder's prefix instead would give: real prompts, faster-whisper's own transcribe.

    python benchmarks/context_cost.py                 # tiny.en, ~30 s on 2 CPU cores
    python benchmarks/context_cost.py --model base --language fr

For each of `--pairs` pairs (a 4-6.5 s prompt as context, then a 1.5-3 s one with 0.3 s of
silence between), the second prompt is decoded four ways, greedy with word timestamps at a
10 s window (the server's CPU decode): alone; after the context's audio, keeping the words
whose middle lies after it; after only the context's last `--short-s` seconds, from a quiet
gap (a cheaper context); the whole context with its decoded text forced as `prefix`. It
prints the mean time a decode took and the WER of each way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from corpus import RATE, load_clips
from faster_whisper import WhisperModel

from rtasr.core.audio_context import Context
from rtasr.engine import resolve_model
from rtasr.eval.wer import joined_wer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="default: the bundled tiny.en")
    ap.add_argument("--language", default="en")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--short-s", type=float, default=2.0,
                    help="the short context's most seconds (default 2)")
    args = ap.parse_args()
    model = WhisperModel(resolve_model(args.model).source, device="cpu", compute_type="int8",
                         cpu_threads=2)
    lang = args.language
    contexts = load_clips(args.pairs, seed=5, min_s=4, max_s=6.5, language=lang)
    owns = load_clips(args.pairs, seed=6, min_s=1.5, max_s=3.0, language=lang)
    gap = np.zeros(int(0.3 * RATE), np.float32)

    def run(audio: np.ndarray, prefix: str | None = None) -> tuple[float, list]:
        t = time.perf_counter()
        segments, _ = model.transcribe(audio, language=lang, beam_size=1, word_timestamps=True,
                                       chunk_length=10, condition_on_previous_text=False,
                                       prefix=prefix, vad_filter=False)
        words = [w for s in segments for w in s.words or []]  # the decode runs here (lazy)
        return time.perf_counter() - t, words

    run(np.concatenate([contexts[0].audio, gap, owns[0].audio]))  # warm up
    ways = ("alone", "after the context", f"after its last {args.short_s:g} s",
            "context text as prefix")
    seconds = dict.fromkeys(ways, 0.0)
    texts: dict[str, list[str]] = {way: [] for way in ways}
    for context, own in zip(contexts, owns, strict=False):
        _, heard = run(np.concatenate([context.audio, gap]))
        prefix = "".join(w.word for w in heard).strip()
        cut = (len(context.audio) + len(gap)) / RATE
        both = np.concatenate([context.audio, gap, own.audio, gap])
        heard_ctx = np.concatenate([context.audio, gap])
        short = Context.of(heard_ctx, len(heard_ctx), int(args.short_s * RATE))
        tail = short.audio if short is not None else heard_ctx[:0]
        for way, audio, pre, after in ((ways[0], np.concatenate([gap, own.audio, gap]), None, 0.0),
                                       (ways[1], both, None, cut),
                                       (ways[2], np.concatenate([tail, own.audio, gap]), None,
                                        len(tail) / RATE),
                                       (ways[3], both, prefix, cut)):
            took, words = run(audio, pre)
            seconds[way] += took
            texts[way].append("".join(w.word for w in words if (w.start + w.end) / 2 >= after))
    references = [own.text for own in owns[: len(texts[ways[0]])]]
    for way in ways:
        print(f"{way:>24}: {seconds[way] / len(references) * 1000:4.0f} ms a decode, "
              f"WER {joined_wer(references, texts[way]):.1%}")


if __name__ == "__main__":
    main()
