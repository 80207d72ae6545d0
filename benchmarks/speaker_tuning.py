"""Tuning the speaker labels: the tracker's threshold and where a final splits, on
benchmarks/speaker_choice.py's speakers (never on diarize_bench.py's streams, which report).

Speakers: the Asterisk readers en, fr, it, ru and the five espeak-ng and flite voices (es is
Allison again: left out; nine voices), 30 turns of 0.8-4 s each, built as speaker_choice.py
builds them (seed 7) and embedded with rtasr's CAM++ (rtasr.engine.speakers). Two measurements:

- tracker: 150 streams of 20 alternating turns (no speaker twice in a row) of 2 and of 4
  speakers drawn at random (from all nine voices, and from the four human readers alone);
  rtasr.core.speakers.SpeakerTracker labels each turn online; the share of turns (and of
  turns of 1.5 s or more) right under the best one-to-one mapping of labels to speakers, and
  the labels opened, for each threshold.
- tracker on run-on finals: the same, with the server's defaults, but a third of the replies
  share a final with the turn before (as at gaps under the endpoint silence), which is cut
  into pieces and split where the voice changes before its sides are assigned.
- changes: 200 run-on pairs (two turns 0.2-0.5 s apart, half of them one speaker's) and 160
  run-on triples (A-B-A or A-B-C, or one speaker's three), cut into pieces and embedded as the
  server does (rtasr.core.speaker_changes); the changes found (a cut inside the gap, +/- 0.1 s)
  and the share of streams with a cut where no voice changed, for each split threshold.

    python benchmarks/speaker_tuning.py          # needs rtasr[diarize], espeak-ng and flite
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
import speaker_choice
from scipy.optimize import linear_sum_assignment

from rtasr.core import speaker_changes
from rtasr.core.speaker_finals import assign_sides
from rtasr.core.speakers import SpeakerOptions, SpeakerTracker

RATE = 16_000
Turn = tuple[np.ndarray, np.ndarray]  # audio, embedding


def turns(per_speaker: int, min_s: float, max_s: float) -> dict[str, list[np.ndarray]]:
    cache = Path(tempfile.gettempdir()) / f"rtasr-speaker-turns-{per_speaker}-{min_s}-{max_s}.npz"
    if not cache.is_file():
        built = speaker_choice.speakers(per_speaker, min_s, max_s)
        np.savez(cache, **{f"{n}/{k}": c for n, cs in built.items() for k, c in enumerate(cs)})
    found: dict[str, list[np.ndarray]] = {}
    with np.load(cache) as stored:
        for key in stored.files:
            found.setdefault(key.rsplit("/", 1)[0], []).append(stored[key])
    found.pop("es")  # Allison, as en
    return found


def streams(voices: dict[str, list[Turn]], names: list[str], speakers: int, count: int,
            seed: int, audio: bool = False) -> list[list[tuple[str, np.ndarray, float]]]:
    """`count` streams of 20 alternating turns: (speaker, embedding or `audio`, seconds)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        who = rng.sample(names, speakers)
        pools = {w: rng.sample(range(len(voices[w])), len(voices[w])) for w in who}
        last, seq = "", []
        for _ in range(20):
            name = rng.choice([w for w in who if w != last])
            sound, vector = voices[name][pools[name].pop()]
            seq.append((name, sound if audio else vector, len(sound) / RATE))
            last = name
        out.append(seq)
    return out


def track(options: SpeakerOptions,
          runs: list[list[tuple[str, np.ndarray, float]]]) -> tuple[float, float, float]:
    """(turns right, turns of 1.5 s or more right, labels per stream)."""
    scores = Scores()
    for seq in runs:
        tracker = SpeakerTracker(options)
        scores.add(seq, [tracker.assign(vector, seconds).speaker for _, vector, seconds in seq],
                   tracker.count)
    return scores.result(len(runs))


class Scores:
    """Turns right under the best one-to-one mapping of labels to speakers, over streams."""

    def __init__(self) -> None:
        self.right = self.total = self.long_right = self.long_total = self.labels = 0

    def add(self, seq: list[tuple[str, np.ndarray, float]], got: list[int],
            labels: int) -> None:
        who = sorted({name for name, _, _ in seq})
        table = np.zeros((len(who), labels))
        for (name, _, _), label in zip(seq, got, strict=True):
            table[who.index(name), label] += 1
        rows, cols = linear_sum_assignment(-table)
        mapping = {int(c): who[r] for r, c in zip(rows, cols, strict=True)}
        ok = [mapping.get(label) == name for (name, _, _), label in zip(seq, got, strict=True)]
        long_ok = [o for o, (_, _, seconds) in zip(ok, seq, strict=True) if seconds >= 1.5]
        self.right, self.total = self.right + sum(ok), self.total + len(ok)
        self.long_right += sum(long_ok)
        self.long_total += len(long_ok)
        self.labels += labels

    def result(self, streams: int) -> tuple[float, float, float]:
        return (self.right / self.total, self.long_right / self.long_total,
                self.labels / streams)


def track_run_on(voices: dict[str, list[Turn]], names: list[str], speakers: int, count: int,
                 seed: int, embed: object, change: speaker_changes.ChangeOptions
                 ) -> tuple[float, float, float]:
    """`track`, but as the server sees a conversation: a third of the replies come sooner than
    the endpoint silence and share a final with the turn before; each final's speech is in
    pieces (each turn cut at its own pauses, turns apart), split as the server splits it
    (speaker_finals.assign_sides: where the voice changes, or where the session's speakers
    tell the sides apart) and each side assigned; a turn's label is the one on most of its
    speech. (turns right, turns of 1.5 s or more right, labels per stream)."""
    rng = random.Random(seed)
    cut: dict[int, tuple[list[float], list[np.ndarray]]] = {}  # a turn's pieces, by id

    def pieces_of(audio: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
        if id(audio) not in cut:
            found = speaker_changes.pieces(audio)
            cut[id(audio)] = ([p.duration_s for p in found],
                              [embed(p.audio) for p in found])  # type: ignore[operator]
        return cut[id(audio)]

    scores = Scores()
    for seq in streams(voices, names, speakers, count, seed, audio=True):
        finals: list[list[int]] = []
        for i in range(len(seq)):
            if finals and rng.random() < 1 / 3:
                finals[-1].append(i)
            else:
                finals.append([i])
        tracker = SpeakerTracker(SpeakerOptions())
        heard: list[dict[int, float]] = [{} for _ in seq]
        for final in finals:
            owner = [i for i in final for _ in pieces_of(seq[i][1])[0]]
            durations = [d for i in final for d in pieces_of(seq[i][1])[0]]
            vectors = [v for i in final for v in pieces_of(seq[i][1])[1]]
            for lo, hi, assignment, _ in assign_sides(tracker, durations, vectors, change):
                for j in range(lo, hi):
                    heard[owner[j]][assignment.speaker] = (
                        heard[owner[j]].get(assignment.speaker, 0.0) + durations[j])
        scores.add(seq, [max(h, key=lambda k, h=h: h[k]) for h in heard], tracker.count)
    return scores.result(count)


CPU_S = {"pieces": 0.0, "whole": 0.0, "speech": 0.0}  # embedding CPU time, speech embedded


def run_ons(voices: dict[str, list[Turn]], embed: object, seed: int = 5) -> list[dict]:
    """Run-on pairs and triples: their pieces' spans and embeddings, and their gaps; the CPU
    time of embedding the pieces and of embedding the speech whole (as one piece)."""
    rng = random.Random(seed)
    names = sorted(voices)
    out = []
    for trial in range(360):
        n, same = (2 if trial < 200 else 3), trial % 2 == 0
        a = rng.choice(names)
        b = rng.choice([x for x in names if x != a])
        who = [a] * n if same else [a, b] if n == 2 else [a, b, rng.choice(
            [a, rng.choice([x for x in names if x not in (a, b)])])]
        picks = [rng.sample(range(len(voices[w])), 3) for w in who]
        clips = [voices[w][p[i]][0] for i, (w, p) in enumerate(zip(who, picks, strict=True))]
        parts, at, gaps = [np.zeros(RATE // 10, np.float32)], 0.1, []
        for i, clip in enumerate(clips):
            parts.append(clip)
            at += len(clip) / RATE
            if i < n - 1:
                gap_s = rng.uniform(0.2, 0.5)
                gaps.append((at, at + gap_s, who[i] != who[i + 1]))
                parts.append(np.zeros(int(gap_s * RATE), np.float32))
                at += gap_s
        parts.append(np.zeros(RATE // 10, np.float32))
        pieces = speaker_changes.pieces(np.concatenate(parts))
        started = time.process_time()
        vectors = [embed(p.audio) for p in pieces]  # type: ignore[operator]
        CPU_S["pieces"] += time.process_time() - started
        started = time.process_time()
        embed(np.concatenate([p.audio for p in pieces]))  # type: ignore[operator]
        CPU_S["whole"] += time.process_time() - started
        CPU_S["speech"] += sum(len(p.audio) for p in pieces) / RATE
        out.append({"same": same, "gaps": gaps, "spans": [(p.start_s, p.end_s) for p in pieces],
                    "vectors": vectors})
    return out


def split_scores(rows: list[dict], options: speaker_changes.ChangeOptions) -> str:
    found = changed = false_cut = same = 0
    for row in rows:
        durations = [end - start for start, end in row["spans"]]
        cuts = [(row["spans"][k - 1][1] + row["spans"][k][0]) / 2
                for k in speaker_changes.changes(durations, row["vectors"], options)]
        real = [(lo, hi) for lo, hi, change in row["gaps"] if change]
        found += sum(any(lo - 0.1 <= c <= hi + 0.1 for c in cuts) for lo, hi in real)
        changed += len(real)
        if row["same"]:
            same += 1
            false_cut += bool(cuts)
    return f"changes found {found}/{changed}, one voice cut {false_cut}/{same}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.55, 0.6, 0.62, 0.65])
    parser.add_argument("--split-threshold", type=float, nargs="+",
                        default=[0.45, 0.5, 0.55, 0.6])
    parser.add_argument("--min-side-s", type=float, nargs="+", default=[0.6, 0.8])
    parser.add_argument("--known-split-threshold", type=float, nargs="+",
                        default=[-1.0, 0.6, 0.65, 0.7],
                        help="run-on finals: also split where the tracker's speakers differ "
                             "and the sides are under this cosine alike (-1: never)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rtasr.engine.speakers import CamPlusPlus

    model = CamPlusPlus()
    voices = {name: [(a, model.embed(a)) for a in clips]
              for name, clips in turns(30, 0.8, 4.0).items()}
    print("tracker: turns right / turns >= 1.5 s right / labels per stream")
    for kind, names in (("all nine voices", sorted(voices)),
                        ("the four readers", [n for n in sorted(voices) if ":" not in n])):
        two, four = streams(voices, names, 2, 150, 1), streams(voices, names, 4, 150, 2)
        print(f" {kind}:")
        for threshold in args.threshold:
            options = SpeakerOptions(threshold=threshold)
            (a2, l2, n2), (a4, l4, n4) = track(options, two), track(options, four)
            print(f"  threshold {threshold:.2f}: 2 speakers {a2:.1%} / {l2:.1%} / {n2:.2f}; "
                  f"4 speakers {a4:.1%} / {l4:.1%} / {n4:.2f}")
        for known in args.known_split_threshold:
            change = speaker_changes.ChangeOptions(known_split_threshold=known)
            (a2, l2, n2), (a4, l4, n4) = (track_run_on(voices, names, k, 150, k, model.embed,
                                                       change) for k in (2, 4))
            print(f"  a third of the replies in the final before, split also where the "
                  f"speakers differ under {known:.2f}: 2 speakers {a2:.1%} / {l2:.1%} / "
                  f"{n2:.2f}; 4 speakers {a4:.1%} / {l4:.1%} / {n4:.2f}")
    rows = run_ons(voices, model.embed)
    print(f"CPU per second of speech (one thread): {CPU_S['pieces'] / CPU_S['speech'] * 1000:.1f}"
          f" ms in pieces, {CPU_S['whole'] / CPU_S['speech'] * 1000:.1f} ms whole "
          f"({sum(len(r['vectors']) for r in rows) / len(rows):.1f} pieces per run-on)")
    print("changes in run-on turns (pairs and triples):")
    for side_s in args.min_side_s:
        for split in args.split_threshold:
            options = speaker_changes.ChangeOptions(min_side_s=side_s, split_threshold=split)
            print(f"  min side {side_s} s, split under {split:.2f}: "
                  f"{split_scores(rows, options)}")


if __name__ == "__main__":
    main()
