"""Language detection per utterance and per session, on real short prompts in five languages.

    python benchmarks/detect_bench.py --clips 40 --seed 1     # ~1 min on 2 CPU cores

Each clip (1.5-4.5 s, the length of a spoken turn) is decoded alone with no language, as the
engine detects it; that is the per-utterance accuracy. The session figures replay those same
detections through the session's policy (LanguageVotes and choose_language in
rtasr.core.engine_api, the code a Session runs): 20 shuffled sessions of 10 utterances per
language, and 20 per language that switch to another language after 10 utterances (accuracy on
the 1st-3rd utterance after the switch). Detection does not depend on the vote (the engine
detects from the audio, then weighs the vote), so the replay is exact for the language chosen.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from corpus import LANGUAGES, load_clips

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest, LanguageVotes, Priority, choose_language
from rtasr.engine import Engine

Detected = tuple[tuple[str, float], ...]


def detections(engine: Engine, language: str, count: int, seed: int) -> list[Detected]:
    clips = load_clips(count, language=language, min_s=1.5, max_s=4.5, seed=seed)
    found: list[Detected] = []
    for k in range(0, len(clips), 8):  # a batch decodes each item as it would alone
        requests = [DecodeRequest(audio=c.audio, priority=Priority.FINAL, session="bench")
                    for c in clips[k : k + 8]]
        found += [r.detected for r in engine.decode_batch(requests, gate=False)]
    return found


def replay(sequence: list[tuple[str, Detected]]) -> list[bool]:
    votes, right = LanguageVotes(), []
    for language, detected in sequence:
        right.append(choose_language(detected, votes.prior) == language)
        votes.add(detected)
    return right


def sessions(found: dict[str, list[Detected]], switch: bool, seed: int = 0
             ) -> dict[str, list[list[bool]]]:
    rng = random.Random(seed)
    out: dict[str, list[list[bool]]] = {}
    for language, rows in found.items():
        out[language] = []
        for _ in range(20):
            seq = [(language, d) for d in rng.sample(rows, min(10, len(rows)))]
            if switch:
                other = rng.choice([x for x in found if x != language])
                seq += [(other, d) for d in rng.sample(found[other], min(10, len(found[other])))]
            out[language].append(replay(seq))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    engine = Engine(Config(model=args.model, workers=1))
    engine.start()
    found = {x: detections(engine, x, args.clips, args.seed) for x in LANGUAGES}
    engine.stop()
    same, switched = sessions(found, False), sessions(found, True)
    print(f"{'language':8} {'clips':>5} {'alone':>6} {'session':>7}")
    for language, rows in found.items():
        alone = sum(d[0][0] == language for d in rows) / len(rows)
        flat = [ok for s in same[language] for ok in s]
        print(f"{language:8} {len(rows):5d} {alone:6.2f} {sum(flat) / len(flat):7.2f}")
    after = [s[10:13] for runs in switched.values() for s in runs]
    print("after a switch of language, utterances 1-3 right:",
          " ".join(f"{sum(a[i] for a in after) / len(after):.2f}" for i in range(3)))


if __name__ == "__main__":
    main()
