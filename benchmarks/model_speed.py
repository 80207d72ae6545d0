"""Raw model speed on the device, below rtasr: CTranslate2's Whisper encoder on full 30 s windows
and its decoder for a fixed number of tokens (the end token suppressed), at several batch sizes,
with timestamp tokens (CTranslate2 then applies its timestamp rules at every step, for every
row: `generate_ms`) and text only (the prompt ends with <|notimestamps|>: `text_ms`). The
ceiling the server works under (gpu_check.sh); a model with random weights does for this.

    python benchmarks/model_speed.py MODEL_DIR --device cuda --compute-type float16
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--compute-type", default="float16")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--tokens", type=int, default=20, help="tokens each decode generates")
    args = ap.parse_args()

    import ctranslate2
    from faster_whisper import WhisperModel

    model = WhisperModel(args.model, device=args.device, compute_type=args.compute_type)
    mels = model.model.n_mels
    tok = model.hf_tokenizer.token_to_id
    sot, eot = tok("<|startoftranscript|>"), tok("<|endoftext|>")
    # CTranslate2 applies its timestamp rules unless the prompt ends with <|notimestamps|>
    prompts = {"generate": [sot], "text": [sot, tok("<|notimestamps|>")]}
    rng = np.random.default_rng(0)
    for batch in (int(b) for b in args.batches.split(",")):
        features = rng.normal(0, 1, (batch, mels, 3000)).astype(np.float32)
        row: dict[str, object] = {"model": args.model, "compute_type": args.compute_type,
                                  "batch": batch}
        for step in ("encode", "generate", "text"):
            times = []
            for _ in range(4):  # the first is a warm-up
                t0 = time.perf_counter()
                encoded = model.model.encode(ctranslate2.StorageView.from_array(features),
                                             to_cpu=False)
                if step != "encode":
                    t0 = time.perf_counter()
                    model.model.generate(encoded, [prompts[step]] * batch, beam_size=1,
                                         max_length=2 * args.tokens,
                                         suppress_tokens=[eot], suppress_blank=False)
                times.append(time.perf_counter() - t0)
            best = min(times[1:])
            row[f"{step}_ms_per_item"] = round(1000 * best / batch, 2)
            row[f"{step}_batch_ms"] = round(1000 * best, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
