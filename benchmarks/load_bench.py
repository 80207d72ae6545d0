"""Load benchmark: N concurrent real-time streams of real speech on one server, swept over N.

Each session streams its own long recording (Asterisk prompts in its own order, natural pauses
of 0.8-2.0 s) in real time, starting at a random moment in the first `--stagger-s` seconds.
First each stream is sent alone, one after another (`--alone`): the words the same streams get
at one session, the reference for every level. Per N it reports final latency p50/p95/max,
first-text latency, WER (all sessions', the same streams' at one session each, the worst
session's) beside the one yardstick (rtasr.eval.yardstick: each utterance decoded whole, the
margins a final gets, faster-whisper's file transcription), utterances without a final,
partials per utterance, the engine's batch sizes, the longest final queue wait, the server's
CPU use (and per session) and event-loop lag p99 (sampled from /healthz), and at the end the
largest N whose finals hold p95 <= --target-p95-s with no
utterance lost. Writes a markdown table, JSON and a PNG plot (matplotlib: the `bench` extra).

    python benchmarks/load_bench.py --clients 4,16,32 -- --max-sessions 32
    python benchmarks/load_bench.py --url ws://gpu-box:8000/ws --clients 50,100,200,400
    python benchmarks/load_bench.py -- --encoder-window-s 10      # extra `rtasr serve` args
    python benchmarks/load_bench.py --query diarize=true -- --diarize  # with speaker labels
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import RATE, Clip, Span, build_stream, load_clips
from stream_bench import SessionRun, cpu_seconds, pct, score, start_server, stream_session

from rtasr.eval import yardstick
from rtasr.eval.wer import errors_by_reference, normalize


def yardstick_texts(streams: list[Stream], model: str | None, device: str) -> list[list[str]]:
    """The one yardstick for each stream: each utterance decoded whole (rtasr.eval.yardstick)."""
    from rtasr.config import Config

    engine = yardstick.engine(Config(model=model, device=device))  # type: ignore[arg-type]
    try:
        return [yardstick.decode(engine, audio, [yardstick.Reference(s.text, s.start, s.end)
                                                 for s in spans], engine.config,
                                 language=engine.language)
                for audio, spans, _ in streams]
    finally:
        engine.stop()


def yardstick_wer(streams: list[Stream], texts: list[list[str]]) -> float:
    """The yardstick's WER over `streams` (each scored by one alignment, as a session is)."""
    errors = sum(sum(errors_by_reference([s.text for s in spans], texts[i % len(texts)]))
                 for i, (_, spans, _) in enumerate(streams))
    words = sum(len(normalize(s.text)) for _, spans, _ in streams for s in spans)
    return errors / max(1, words)


def health_url(ws_url: str) -> str:
    base = ws_url.replace("ws://", "http://").replace("wss://", "https://")
    return base.rsplit("/", 1)[0] + "/healthz"


def get_health(url: str) -> dict[str, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:  # 503 while full still has the JSON body
        return json.loads(exc.read())  # type: ignore[no-any-return]


async def sample_health(url: str, samples: list[dict[str, object]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(await asyncio.to_thread(get_health, url))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def chosen_streams(streams: list[Stream], clients: int) -> list[Stream]:
    return [streams[i % len(streams)] for i in range(clients)]


def gpu_sample() -> tuple[float, float] | None:
    """(GPU utilization %, GPU memory used MiB) from nvidia-smi; None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    util, mem = out.splitlines()[0].split(",")
    return float(util), float(mem)


async def sample_gpu(samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set() and (sample := await asyncio.to_thread(gpu_sample)) is not None:
        samples.append(sample)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def timed(run: SessionRun, spans: list[Span]) -> dict[str, object]:
    """Latency without the words (a random-weights model says nothing right): each reference
    utterance's final is the last final whose audio overlaps it."""
    finals = [(r.at, r.msg) for r in run.messages if r.msg["type"] == "final"]
    latencies = []
    for span in spans:
        mine = [at for at, f in finals if f["start"] < span.end and f["end"] > span.start]
        if mine:
            latencies.append(max(mine) - span.end)
    return {"latencies": latencies, "missing": len(spans) - len(latencies),
            "errors": 0, "words": 1}


async def run_level(url: str, streams: list[Stream], clients: int,
                    stagger_s: float, timing_only: bool = False,
                    query: str = "") -> dict[str, object]:
    rng = random.Random(clients)
    samples: list[dict[str, object]] = []
    gpu: list[tuple[float, float]] = []
    stop = asyncio.Event()
    hurl = health_url(url)
    before = get_health(hurl)["engine"]
    samplers = [asyncio.create_task(sample_health(hurl, samples, stop)),
                asyncio.create_task(sample_gpu(gpu, stop))]
    chosen = chosen_streams(streams, clients)
    runs = await asyncio.gather(*(stream_session(url, audio, rng.uniform(0, stagger_s), 1.0,
                                                 query)
                                  for audio, _, _ in chosen))
    stop.set()
    await asyncio.gather(*samplers)
    after = get_health(hurl)["engine"]
    scores = [{**score(run, spans, False), **(timed(run, spans) if timing_only else {})}
              for run, (_, spans, _) in zip(runs, chosen, strict=True)]
    per_session = [s["errors"] / max(1, s["words"]) for s in scores]  # type: ignore[operator]
    lat = [x for s in scores for x in s["latencies"]]  # type: ignore[attr-defined]
    first = [x for s in scores for x in s["first_text"]]  # type: ignore[attr-defined]
    utterances = sum(len(spans) for _, spans, _ in chosen)
    batches = after["batches"] - before["batches"]  # type: ignore[operator]
    decodes = after["decodes"] - before["decodes"]  # type: ignore[operator]
    engine = [s["engine"] for s in samples]
    return {
        "clients": clients,
        "errors": sum(run.error is not None for run in runs),
        "wer": float("nan") if timing_only else
        sum(s["errors"] for s in scores) / sum(s["words"] for s in scores),  # type: ignore[misc]
        "wer_max": float("nan") if timing_only else max(per_session),
        # each session's (errors, words), for the comparison with its stream alone
        "session_errors": [[s["errors"], s["words"]] for s in scores],
        "final_p50": pct(lat, 50), "final_p95": pct(lat, 95), "final_max": max(lat, default=0),
        "first_p50": pct(first, 50), "first_p95": pct(first, 95),
        "missing": sum(s["missing"] for s in scores),  # type: ignore[misc]
        "utterances": utterances,
        "partials_per_utt": sum(s["partials"] for s in scores) / utterances,  # type: ignore[misc]
        "decodes_per_utt": decodes / utterances,
        "mean_batch": decodes / max(1, batches),
        "final_wait_max": max((e["final_wait_s"] for e in engine), default=0.0),  # type: ignore[index]
        "queue_max": max((e["queue_depth"] for e in engine), default=0),  # type: ignore[index]
        # the share of the workers' time that finals took (the engine is `behind` above 0.7)
        "final_share": sum(float(e.get("final_share", 0)) for e in engine)  # type: ignore[union-attr]
        / max(1, len(engine)),
        # (Ray's ingress reports none)
        "loop_lag_p99_ms": max((float(s["loop_lag_p99_ms"]) for s in samples  # type: ignore[arg-type]
                                if "loop_lag_p99_ms" in s), default=float("nan")),
        # the GPU busy share while the streams ran (nvidia-smi), and its memory use
        "gpu_util": sum(u for u, _ in gpu) / len(gpu) if gpu else float("nan"),
        "gpu_mem_mib": max((m for _, m in gpu), default=float("nan")),
    }


Stream = tuple[np.ndarray, list[Span], list[Clip]]


def alone_level(url: str, streams: list[Stream], count: int, cache: Path | None,
                seed: int, query: str = "") -> dict[str, object]:
    """Each of the first `count` streams sent alone, one after another: what each session's
    words are at one session, the reference for the same streams under load. `cache` keeps
    them (for load policies that do not change what a lone session gets)."""
    if cache is not None and cache.exists():
        level: dict[str, object] = json.loads(cache.read_text())
        if level.get("seed") == seed and len(level["session_errors"]) >= count:  # type: ignore[arg-type]
            print(f"one session each: from {cache}", flush=True)
            return level
    runs = []
    for i in range(count):
        runs.append(asyncio.run(run_level(url, [streams[i]], 1, 0.0, query=query)))
        print(f"stream {i} alone: WER {runs[-1]['wer']:.2%}, final p95 "
              f"{runs[-1]['final_p95']:.2f} s", flush=True)
    errors = [run["session_errors"][0] for run in runs]  # type: ignore[index]
    level = {**runs[0], "clients": 1, "session_errors": errors,
             "wer": sum(e for e, _ in errors) / sum(w for _, w in errors),
             "wer_max": max(float(run["wer"]) for run in runs),  # type: ignore[arg-type]
             **{key: max(float(run[key]) for run in runs)  # type: ignore[arg-type]
                for key in ("final_p95", "final_max", "final_wait_max", "loop_lag_p99_ms")},
             **{key: sum(float(run[key]) for run in runs) / count  # type: ignore[arg-type]
                for key in ("final_p50", "first_p50", "first_p95", "partials_per_utt",
                            "decodes_per_utt", "mean_batch", "final_share")},
             **{key: sum(int(run[key]) for run in runs)  # type: ignore[call-overload]
                for key in ("errors", "missing", "utterances")}, "seed": seed}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(level))
    return level


def versus_alone(level: dict[str, object], alone: dict[str, object]) -> float:
    """The WER the same streams had at one session each (session i streams stream i % 8)."""
    mine = alone["session_errors"]  # type: ignore[assignment]
    chosen = [mine[i % len(mine)] for i in range(int(level["clients"]))]  # type: ignore[call-overload,arg-type,index]
    return sum(e for e, _ in chosen) / max(1, sum(w for _, w in chosen))


def holds(level: dict[str, object], target_p95_s: float, timing_only: bool = False) -> bool:
    """The level met the target: final p95 within it, no utterance lost, none refused. With
    --timing-only an utterance without a final is not counted lost: a random-weights model's
    decodes often fail the repetition check and come back empty."""
    return (float(level["final_p95"]) <= target_p95_s  # type: ignore[arg-type]
            and (timing_only or level["missing"] == 0) and not level["errors"])


def build_streams(clips: list[Clip], count: int, per_stream: int, seed: int = 1
                  ) -> list[Stream]:
    streams = []
    for i in range(count):
        order = random.Random(100 * seed + i).sample(clips, min(per_stream, len(clips)))
        audio, spans = build_stream(order, pause_s=(0.8, 2.0), seed=200 * seed + i)
        streams.append((audio, spans, order))
    return streams


def markdown(results: dict[str, object]) -> str:
    nan = float("nan")
    rows = [
        "| clients | final p50 | final p95 | final max | first text p50 | WER | WER, one "
        "session each | worst session | yardstick | refused | no final | partials/utt "
        "| decodes/utt | mean batch | final wait max | loop lag p99 | server CPU "
        "| per session | loop CPU | GPU busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in results["levels"]:  # type: ignore[attr-defined]
        rows.append(
            f"| {lv['clients']} | {lv['final_p50']:.2f} s | {lv['final_p95']:.2f} s "
            f"| {lv['final_max']:.2f} s | {lv['first_p50']:.2f} s | {lv['wer']:.2%} "
            f"| {lv.get('wer_alone', nan):.2%} | {lv.get('wer_max', nan):.2%} "
            f"| {lv.get('yardstick_wer', nan):.2%} "
            f"| {lv['errors']} | {lv['missing']}/{lv['utterances']} "
            f"| {lv['partials_per_utt']:.1f} "
            f"| {lv['decodes_per_utt']:.1f} | {lv['mean_batch']:.1f} "
            f"| {lv['final_wait_max']:.2f} s | {lv['loop_lag_p99_ms']:.1f} ms "
            f"| {lv.get('server_cpu', nan):.0%} "
            f"| {lv.get('server_cpu', nan) / lv['clients']:.1%} "
            f"| {lv.get('loop_cpu', nan):.0%} "
            f"| {lv.get('gpu_util', nan):.0f} % |")
    lost = ("" if results.get("timing_only") else " and no utterance lost")
    rows += ["", f"largest N with final p95 <= {results['target_p95_s']} s{lost}: "
                 f"{results['max_clients']}"]
    return "\n".join(rows)


def plot(results: dict[str, object], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]  # type: ignore[assignment]
    n = [lv["clients"] for lv in levels]  # type: ignore[attr-defined]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("final_p50", "final p50"), ("final_p95", "final p95"),
                       ("first_p50", "first text p50")):
        ax.plot(n, [lv[key] for lv in levels], marker="o", label=label)  # type: ignore[attr-defined]
    ax.axhline(float(results["target_p95_s"]), color="grey", ls="--", lw=1,  # type: ignore[arg-type]
               label="p95 target")
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("latency (s)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="benchmark a running server (e.g. on a GPU box)")
    ap.add_argument("--clients", default="1,4,8,12,16", help="concurrency levels to sweep")
    ap.add_argument("--clips", type=int, default=60, help="distinct speech clips in the pool")
    ap.add_argument("--per-stream", type=int, default=12, help="clips each session speaks")
    ap.add_argument("--seed", type=int, default=1,
                    help="which clips and streams (another seed: speech the defaults were not "
                         "chosen on)")
    ap.add_argument("--stagger-s", type=float, default=5.0, help="spread of session starts")
    ap.add_argument("--target-p95-s", type=float, default=1.5)
    ap.add_argument("--no-yardstick", action="store_true", help="skip the yardstick")
    ap.add_argument("--alone", action=argparse.BooleanOptionalAction, default=True,
                    help="first send each stream alone, one after another: the WER the same "
                         "streams have at one session, beside each level's")
    ap.add_argument("--alone-json", type=Path,
                    help="keep the one-session runs here and reuse them when present (for "
                         "server changes that only act under load)")
    ap.add_argument("--timing-only", action="store_true",
                    help="latency by time, not by words: for a model whose words mean nothing "
                         "(random_whisper.py)")
    ap.add_argument("--stop-after-miss", action="store_true",
                    help="end the sweep after the first level that misses the target")
    ap.add_argument("--query", default="",
                    help="what each session asks for in its URL, e.g. diarize=true (the "
                         "server then needs -- --diarize)")
    ap.add_argument("--model", default=None, help="model of the server and the yardstick")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--title", default="rtasr load, bundled tiny.en int8, 2-vCPU VM")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/load"),
                    help="writes OUT.json, OUT.md and OUT.png")
    ap.add_argument("server_args", nargs="*", help="extra `rtasr serve` arguments (after --)")
    args = ap.parse_args()

    clips = load_clips(args.clips, seed=args.seed)
    streams = build_streams(clips, 8, args.per_stream, args.seed)
    print(f"{len(clips)} clips; each session streams {len(streams[0][0]) / RATE:.0f} s "
          f"({args.per_stream} utterances)", flush=True)
    results: dict[str, object] = {"target_p95_s": args.target_p95_s, "levels": [],
                                  "timing_only": args.timing_only}
    yardsticks: list[list[str]] = []
    if not args.no_yardstick:
        t = time.perf_counter()
        yardsticks = yardstick_texts(streams, args.model, args.device)
        print(f"yardstick WER {yardstick_wer(streams, yardsticks):.2%} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    proc, url = None, args.url
    if url is None:
        extra = ["--device", args.device, *args.server_args]
        if args.model:
            extra += ["--model", args.model]
        proc, url = start_server(extra)
    try:
        levels = [int(x) for x in args.clients.split(",")]
        alone = None
        if args.alone and not args.timing_only:
            alone = alone_level(url, streams, min(len(streams), max(levels)), args.alone_json,
                                args.seed, args.query)
            if proc:
                alone["server_cpu"] = float("nan")
            alone["wer_alone"] = alone["wer"]
            results["levels"].append(alone)  # type: ignore[attr-defined]
            if yardsticks:
                alone["yardstick_wer"] = yardstick_wer(
                    streams[:len(alone["session_errors"])], yardsticks)  # type: ignore[arg-type]
        for n in levels:
            cpu0, wall0 = (cpu_seconds(proc.pid) if proc else 0.0), time.monotonic()
            loop0 = cpu_seconds(proc.pid, main_thread=True) if proc else 0.0
            client0 = time.process_time()
            level = asyncio.run(run_level(url, streams, n, args.stagger_s, args.timing_only,
                                          args.query))
            level["client_cpu"] = (time.process_time() - client0) / (time.monotonic() - wall0)
            if proc:
                wall = time.monotonic() - wall0
                level["server_cpu"] = (cpu_seconds(proc.pid) - cpu0) / wall
                # the event loop's thread alone: one core is all it can ever have
                level["loop_cpu"] = (cpu_seconds(proc.pid, main_thread=True) - loop0) / wall
            if alone is not None:
                level["wer_alone"] = versus_alone(level, alone)
            if yardsticks:
                chosen = chosen_streams(streams, n)
                level["yardstick_wer"] = yardstick_wer(
                    chosen, [yardsticks[i % len(streams)] for i in range(n)])
            results["levels"].append(level)  # type: ignore[attr-defined]
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in level.items()}), flush=True)
            if args.stop_after_miss and not holds(level, args.target_p95_s, args.timing_only):
                break
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
    ok = [lv["clients"] for lv in results["levels"]  # type: ignore[attr-defined]
          if holds(lv, args.target_p95_s, args.timing_only)]
    results["max_clients"] = max(ok, default=0)
    table = markdown(results)
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    try:
        plot(results, args.out.with_suffix(".png"), args.title)
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no plot", file=sys.stderr)


if __name__ == "__main__":
    main()
