"""Does a big file upload delay live finals? (File jobs run below live finals.)

Starts `rtasr serve`, streams N live sessions of real prompts with pauses in real time, once
alone and once while files are posted to `/v1/audio/transcriptions` back to back (the
official `openai` SDK, `pip install '.[test]'`), and reports the live sessions' final latency
and WER both ways, and how long the uploads took.

    python benchmarks/upload_bench.py --live 2 --upload-s 120

With `--silence-s`, the upload is that much digital silence instead (FLAC, so an hour fits
OpenAI's 25 MB limit): no decodes at all, only VAD work for the upload's feed loop, which
must not hold up the live sessions' finals.

    python benchmarks/upload_bench.py --live 8 --silence-s 3600
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import RATE, build_stream, load_clips
from stream_bench import pct, score, start_server, stream_session


def flac_silence(seconds: int) -> bytes:
    """`seconds` of 16 kHz mono digital silence as FLAC (PyAV): a few hundred kB an hour."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        zeros = np.zeros((1, RATE), "<i2")
        for i in range(seconds):
            frame = av.AudioFrame.from_ndarray(zeros, format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, i * RATE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def wav_bytes(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


async def live(url: str, streams: list, stop: asyncio.Event | None = None) -> dict[str, float]:
    runs = await asyncio.gather(*(stream_session(url, audio, i * 0.5, 1.0)
                                  for i, (audio, _) in enumerate(streams)))
    if stop is not None:
        stop.set()
    scores = [score(r, spans) for r, (_, spans) in zip(runs, streams, strict=True)]
    lat = [x for s in scores for x in s["latencies"]]
    return {"final_p50": pct(lat, 50), "final_p95": pct(lat, 95),
            "final_max": max(lat, default=0.0), "missing": sum(s["missing"] for s in scores),
            "wer": sum(s["errors"] for s in scores) / sum(s["words"] for s in scores)}


async def uploads(base_url: str, name: str, data: bytes, stop: asyncio.Event) -> list[float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none")
    took = []
    while not stop.is_set():
        t0 = time.monotonic()
        await client.audio.transcriptions.create(model="whisper-1",
                                                 file=(name, data, "audio/wav"))
        took.append(time.monotonic() - t0)
    return took


async def main_async(args: argparse.Namespace) -> None:
    clips = load_clips(40)
    streams = [build_stream(clips[i * 8 : i * 8 + 8], pause_s=(0.8, 2.0), seed=i)
               for i in range(args.live)]
    if args.silence_s:
        upload_s, name = float(args.silence_s), "silence.flac"
        data = flac_silence(args.silence_s)
    else:
        big, _ = build_stream(load_clips(200, seed=9)[: args.upload_s // 3], pause_s=(0.2, 0.5))
        upload_s, name = len(big[: args.upload_s * RATE]) / RATE, "big.wav"
        data = wav_bytes(big[: args.upload_s * RATE])
    proc, url = start_server([])
    base = url.replace("ws://", "http://").rsplit("/ws", 1)[0] + "/v1"
    try:
        alone = await live(url, streams)
        stop = asyncio.Event()
        posting = asyncio.create_task(uploads(base, name, data, stop))
        busy = await live(url, streams, stop)
        took = await posting
    finally:
        proc.terminate()
        proc.wait(30)
    result = {"live_sessions": args.live, "upload_s": upload_s, "upload_bytes": len(data),
              "alone": alone, "with_uploads": busy, "uploads_done": len(took),
              "upload_took_s": took}
    print(json.dumps(result, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live", type=int, default=2, help="live real-time sessions")
    ap.add_argument("--upload-s", type=int, default=120, help="seconds of audio per upload")
    ap.add_argument("--silence-s", type=int, default=0,
                    help="upload this many seconds of silence instead of speech")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
