"""Event-loop lag: how late the loop runs a callback that asked to run now.

Anything that blocks the loop (a decode run on it by mistake, a huge JSON parse, a slow
callback) shows up here first. `LoopMonitor` ticks every `interval_s` and keeps the lateness of
the last `window_s` of ticks; the server reports its p99 in /healthz.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

import numpy as np


class LoopMonitor:
    def __init__(self, interval_s: float = 0.01, window_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._lags: collections.deque[float] = collections.deque(
            maxlen=int(window_s / interval_s))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rtasr-loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self._lags.append(max(0.0, time.perf_counter() - t0 - self.interval_s))

    def lag_ms(self, q: float = 99.0) -> float:
        """The q-th percentile of the loop's lateness over the window, in milliseconds."""
        if not self._lags:
            return 0.0
        return round(1000 * float(np.percentile(np.fromiter(self._lags, float), q)), 2)
