"""`rtasr serve` with a memory probe, for benchmarks that ask what the server's memory holds.

    python benchmarks/server_probe.py serve [rtasr serve options]

runs the server as `python -m rtasr` would. On SIGUSR1 the server's own process collects
garbage, reads its RSS, calls glibc's `malloc_trim(0)` (the allocator hands freed pages back to
the system) and reads its RSS again, then writes both as JSON to `$RTASR_PROBE_OUT`. RSS after
the trim is memory still in use; the difference is memory freed but held by the allocator.

With `RTASR_TRACEMALLOC=N` it also traces Python allocations (N frames each) and, on each
probe, writes a snapshot beside the JSON (`<out>.<n>.snap`), for
`tracemalloc.Snapshot.load(...).compare_to(...)` between probes.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).parent.parent))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def install(out: Path) -> None:
    frames = int(os.environ.get("RTASR_TRACEMALLOC", "0"))
    if frames:
        tracemalloc.start(frames)
    libc = ctypes.CDLL("libc.so.6")
    probes = 0

    def probe(_signum: int, _frame: FrameType | None) -> None:
        nonlocal probes
        probes += 1
        gc.collect()
        raw = rss_mb()
        libc.malloc_trim(0)
        result = {"probe": probes, "rss_mb": raw, "trimmed_rss_mb": rss_mb()}
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(f"{out}.{probes}.snap")
            result["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, probe)


if __name__ == "__main__":
    install(Path(os.environ["RTASR_PROBE_OUT"]))
    from rtasr.cli import main

    sys.argv[0] = "rtasr"
    sys.exit(main())
