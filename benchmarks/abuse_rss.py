"""Leak or high-water mark? The abuse storm, several times, against one `rtasr serve`.

One storm: malformed frames (bad JSON, odd-length PCM, NaN floats, oversized frames, bad
query strings), a 20 s blaster (real speech sent as fast as the server reads it), and 200
connect/disconnect cycles (a third send audio, a third vanish without a close frame). After
each storm, once the server is idle again, it reports the server's RSS (VmRSS) and its peak
(VmHWM). A leak grows with every storm; a high-water mark (the allocator keeping freed memory
for reuse) rises in the first storm and stays flat after it.

    python benchmarks/abuse_rss.py --storms 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from stream_bench import start_server

from tests.helpers import clip_at, encode, silence


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def exchange(url: str, *frames: bytes | str) -> None:
    with contextlib.suppress(ConnectionClosed, InvalidStatus, OSError, TimeoutError):
        async with asyncio.timeout(30), connect(url, max_size=None) as ws:
            for frame in frames:
                await ws.send(frame)
            async for _ in ws:
                pass


async def malformed(url: str) -> None:
    end = json.dumps({"type": "end"})
    cases: list[tuple[str, tuple[bytes | str, ...]]] = [
        ("", ("{not json", "[1, 2]", json.dumps({"type": "dance"}), end)),
        ("", (b"\x01\x02\x03",)),
        ("encoding=pcm_f32le", (np.array([0.1, np.nan], "<f4").tobytes(),)),
        ("", (b"\x00" * (2 << 20),)),
        ("", ("x" * (1 << 20),)),
        ("", (os.urandom(8192), end)),
        ("sample_rate=100", ()), ("encoding=mp3", ()), ("language=xx-ZZ-long", ()),
    ]
    for _ in range(5):
        for query, frames in cases:
            await exchange(f"{url}?{query}", *frames)


async def blaster(url: str, seconds: float) -> None:
    """Real speech, as fast as the server reads it, for `seconds`."""
    speech = encode(np.concatenate([silence(0.3, 16000), clip_at("tt-weasels", 16000),
                                    silence(0.6, 16000)]))
    t0 = time.monotonic()
    with contextlib.suppress(ConnectionClosed):
        async with connect(url, max_size=None) as ws:
            drain = asyncio.create_task(_drain(ws))
            while time.monotonic() - t0 < seconds:
                for i in range(0, len(speech), 32000):
                    await ws.send(speech[i : i + 32000])
            await ws.send(json.dumps({"type": "end"}))
            await drain


async def _drain(ws: object) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:  # type: ignore[attr-defined]
            pass


async def cycles(url: str, n: int) -> None:
    piece = encode(clip_at("tt-weasels", 16000)[:8000])

    async def once(i: int) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            async with connect(url) as ws:
                if i % 3 == 0:
                    await ws.send(piece)
                if i % 3 == 1:
                    ws.transport.abort()

    for start in range(0, n, 4):
        await asyncio.gather(*(once(i) for i in range(start, start + 4)))


async def idle(http: str) -> None:
    import urllib.request

    def sessions() -> int:
        with urllib.request.urlopen(f"{http}/healthz") as r:
            health = json.loads(r.read())
        return int(health["sessions"]) + int(health["engine"]["queue_depth"])

    while await asyncio.to_thread(sessions):
        await asyncio.sleep(0.2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storms", type=int, default=3)
    parser.add_argument("--blast-s", type=float, default=20.0)
    args, extra = parser.parse_known_args()
    proc, url = start_server(["--max-frame-bytes", "1048576", *extra])
    http = url.replace("ws://", "http://").removesuffix("/ws")
    try:
        await idle(http)
        rss, _ = memory_mb(proc.pid)
        print(f"started: RSS {rss:.0f} MB")
        for storm in range(1, args.storms + 1):
            t0 = time.monotonic()
            await asyncio.gather(malformed(url), blaster(url, args.blast_s), cycles(url, 200))
            await idle(http)
            rss, peak = memory_mb(proc.pid)
            print(f"storm {storm} ({time.monotonic() - t0:.0f} s): RSS {rss:.0f} MB, "
                  f"peak {peak:.0f} MB", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
