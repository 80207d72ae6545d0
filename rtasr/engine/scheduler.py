"""The engine's queue: which decode runs next, and with which others it is batched.

Pure Python and thread-safe: sessions `submit` jobs from the event loop, worker threads `take`
batches. The policy lives here and nowhere else:

- Finals before partials; finals of real-time sessions before those of sessions sending
  faster than real time (a file: `realtime=False`), whose backlog must not delay live speech.
  Within each class, sessions take turns: the session with the fewest finals started in the
  last few seconds goes first, then the oldest final. Finals are never dropped.
- A session has at most one queued partial: a newer one replaces it (the old one resolves to
  None). Partials that may bring an utterance's first words go before those that refresh
  words already shown (`refresh`), the newest first: when the engine cannot keep up, an
  utterance that just began gets its first words while they are news, and one whose first
  words have waited long is the nearer to its final, which brings them anyway (first come,
  first served would make every one of them late; docs/benchmarks.md). A refresh is
  dropped at once when a final is already waiting and every worker is busy, and when it has
  waited longer than `partial_max_wait_s` (a newer one will show more). First words are
  never dropped: they keep their place until spare capacity or a batch of finals takes them,
  or their session cancels them (the utterance paused: its final decode makes them moot);
  dropped, they would come back an interval of speech later.
- Partials run on spare capacity only: never while a final waits for a worker or work that
  finals wait for runs beside the decodes (`side_work`: speaker embeddings), and one batch of
  partials at a time. A refresh also waits while any final decodes and never takes the last
  free worker, so a final that arrives starts at once. An utterance's first words may take
  the last free worker beside a decoding final while no final waits: under load there is
  rarely a moment with no final decoding, and first words that wait for one are mostly made
  moot by their own final (docs/benchmarks.md); a final that arrives meanwhile waits for the
  first worker done.
- A batch is the most urgent job plus, in priority order, the waiting jobs that can share its
  model call (same `key`), up to `max_batch_size`; a batch takes no job of a lower class (a
  batch of finals no refreshes, a real-time batch no file finals, a batch of first words no
  refreshes: they would slow it; on a CPU a batch of four takes 2.5 times as long as one
  decode), except that, while the engine keeps up with its finals (`RIDE_WAIT_S`), a partial
  that may bring an utterance's first words rides along a batch of real-time finals: it takes
  no worker of its own and costs the batch one more item of the shared encoder pass (its words
  are generated after the finals', which go back first), so under load an utterance's first
  words need not wait for the finals to thin out. When fewer are waiting, a worker may wait up
  to `batch_window_s` for more.
- Load figures for admission and for the partial cadence: the age of the oldest waiting
  real-time final, the longest real-time final wait of the last few seconds (a file's backlog
  is its own business), and the queue length per worker; and, for what sessions may leave out
  under load, the share of the workers' time that finals took in the last `BUSY_S`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Hashable
from typing import Any

RECENT_S = 5.0  # how far back `recent_final_wait_s` looks
# An utterance's first words ride along batches of finals (and are not shed while finals
# wait) only while no real-time final waited longer than this lately: past it the engine is
# saturated, and riders would only make every final later (docs/benchmarks.md).
RIDE_WAIT_S = 0.3
BUSY_S = 10.0  # how far back `final_share` looks


class Job:
    __slots__ = (
        "dropped",
        "future",
        "key",
        "loop",
        "partial",
        "payload",
        "realtime",
        "refresh",
        "seq",
        "session",
        "started",
        "submitted",
    )

    def __init__(self, payload: Any, *, partial: bool, session: str, key: Hashable,
                 loop: asyncio.AbstractEventLoop, realtime: bool = True,
                 refresh: bool = False) -> None:
        self.payload = payload
        self.partial = partial
        self.refresh = refresh  # a partial that cannot bring its utterance's first words
        self.realtime = realtime
        self.session = session
        self.seq = 0
        self.key = key
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.submitted = time.monotonic()
        self.started = 0.0
        self.dropped = False

    @property
    def tier(self) -> tuple[bool, bool]:
        """The job's class: (partial, not real-time); lower goes first."""
        return self.partial, not self.realtime

    def resolve(self, result: Any) -> None:
        """Hand a result (or an exception) to the job's event loop, from any thread."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self.loop.call_soon_threadsafe(_deliver, self.future, result)


def _joins(job: Job, first: Job, ride: bool) -> bool:
    """`job` may join the batch led by `first` (same key, room left): a job of its class or
    above, but no refresh beside first words; and, where `ride`, first words beside finals."""
    if first.partial and not first.refresh and job.refresh:
        return False
    return job.tier <= first.tier or (ride and _rides_along(job, first))


def _rides_along(job: Job, first: Job) -> bool:
    """`job` may join the batch of `first`, a class above it: an utterance's first words
    beside real-time finals."""
    return job.partial and not job.refresh and job.realtime and first.realtime


def _deliver(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Scheduler:
    def __init__(self, *, workers: int, max_batch_size: int = 1, batch_window_s: float = 0.0,
                 partial_max_wait_s: float = 1.0) -> None:
        self.workers = workers
        self.max_batch_size = max(1, max_batch_size)
        self.batch_window_s = batch_window_s
        self.partial_max_wait_s = partial_max_wait_s
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._queued_partials: dict[str, Job] = {}
        self._finals_waiting = 0
        self._seq = itertools.count()
        self._closed = False
        self._busy = 0
        self._partial_busy = 0  # workers busy with a batch of partials
        self._side_busy = 0  # work beside the decodes that finals wait for (side_work)
        self._recent_waits: collections.deque[tuple[float, float]] = collections.deque()
        # batches of finals: when they started and ended, for `final_share`
        # (start, end, the finals' share of the batch: first words may ride along)
        self._final_spans: collections.deque[tuple[float, float, float]] = collections.deque()
        # a running batch of finals, by its first job's seq: its start and its finals' share
        self._running_finals: dict[int, tuple[float, float]] = {}
        # finals started in the last RECENT_S, for turn-taking between sessions
        self._starts: collections.deque[tuple[float, str]] = collections.deque()
        self._started_recently: collections.Counter[str] = collections.Counter()
        self.dropped_partials = 0
        self.batches = 0
        self.batched_jobs = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()

    # the event-loop side ---------------------------------------------------------------------

    def submit(self, job: Job) -> bool:
        """Queue `job`; False when the scheduler is closed. A partial may resolve to None."""
        with self._cond:
            if self._closed:
                return False
            if job.partial:
                stale = self._queued_partials.pop(job.session, None)
                if stale is not None:
                    stale.dropped = True
                    self._queue.remove(stale)
                    _deliver(stale.future, None)
                if job.refresh and self._finals_waiting and self._busy >= self.workers:
                    self.dropped_partials += 1
                    _deliver(job.future, None)
                    return True
                self._queued_partials[job.session] = job
            else:
                self._finals_waiting += 1
            job.seq = next(self._seq)
            self._queue.append(job)
            # Every waiter: a worker filling a batch may wake, find another key and wait on,
            # and a single notify() would then be lost to an idle worker.
            self._cond.notify_all()
            return True

    def side_work(self, started: bool) -> None:
        """A piece of work that a final waits for, run beside the decodes on a thread of its
        own (a speaker embedding), was asked for (True) or is done (False): no partial starts
        while any is asked for, so it has the CPU a partial would take."""
        with self._cond:
            self._side_busy = max(0, self._side_busy + (1 if started else -1))
            if not self._side_busy:
                self._cond.notify_all()

    def cancel(self, job: Job) -> None:
        """The submitter no longer wants `job` (its session closed): out of the queue and of
        every load figure at once, if still queued (a running batch finishes)."""
        with self._cond:
            job.dropped = True
            if job in self._queue:
                self._remove(job)
                self._cond.notify_all()

    # the worker side -------------------------------------------------------------------------

    def take(self) -> list[Job] | None:
        """Block until there is work; return the next batch, or None once closed.

        Partials only start on spare capacity (`_partial_may_start`).
        """
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                first = self._peek_live()
                if first is None:
                    continue
                if first.partial and not self._partial_may_start(first):
                    self._cond.wait(0.05)  # until a final arrives or a worker is done
                    continue
                self._remove(first)
                batch = [first]
                if self.max_batch_size > 1:
                    self._fill(batch)
                now = time.monotonic()
                for job in batch:
                    job.started = now
                    if not job.partial:
                        self._starts.append((now, job.session))
                        self._started_recently[job.session] += 1
                        if job.realtime:
                            self._recent_waits.append((now, now - job.submitted))
                self._busy += 1
                self._partial_busy += first.partial
                if not first.partial:
                    share = sum(not job.partial for job in batch) / len(batch)
                    self._running_finals[first.seq] = (now, share)
                self.batches += 1
                self.batched_jobs += len(batch)
                self.batch_sizes[len(batch)] += 1
                return batch

    def _partial_may_start(self, first: Job) -> bool:
        """Partials take spare capacity only: no final is waiting for a worker or for side
        work, and no other batch of partials runs. A refresh also waits while any final
        decodes, and with more than one worker leaves the last free one for the next final;
        an utterance's first words may take it beside a decoding final."""
        if self._side_busy or self._finals_waiting:
            return False
        if not first.refresh:
            return not self._partial_busy
        finals_running = self._busy > self._partial_busy
        return not finals_running and not 0 < self.workers - 1 <= self._partial_busy

    def done(self, batch: list[Job]) -> None:
        """A worker finished `batch`."""
        with self._cond:
            self._busy -= 1
            self._partial_busy -= batch[0].partial
            if not batch[0].partial:
                now = time.monotonic()
                start, share = self._running_finals.pop(batch[0].seq, (now, 1.0))
                self._final_spans.append((start, now, share))
            self._cond.notify_all()

    def close(self) -> list[Job]:
        """Stop handing out work; return the jobs still queued (the caller fails them)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            left = [job for job in self._queue if not job.dropped]
            self._queue.clear()
            self._queued_partials.clear()
            self._finals_waiting = 0
            return left

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    def _remove(self, job: Job) -> None:
        self._queue.remove(job)
        self._forget(job)

    def _rank(self, job: Job) -> tuple[bool, bool, int, float, int]:
        """The order of service: class, then turns between sessions (for partials: an
        utterance's first words before a refresh of words already shown), then age: the
        oldest first, but the newest first words first."""
        if job.partial and not job.refresh:
            return (*job.tier, 0, -job.submitted, -job.seq)
        turns = int(job.refresh) if job.partial else self._started_recently[job.session]
        return (*job.tier, turns, job.submitted, job.seq)

    def _ranked(self) -> list[Job]:
        now = time.monotonic()
        while self._starts and now - self._starts[0][0] > RECENT_S:
            _, session = self._starts.popleft()
            self._started_recently[session] -= 1
            if not self._started_recently[session]:
                del self._started_recently[session]
        return sorted(self._queue, key=self._rank)

    def _forget(self, job: Job) -> None:
        if job.partial:
            if self._queued_partials.get(job.session) is job:
                del self._queued_partials[job.session]
        else:
            self._finals_waiting -= 1

    def _riders_welcome(self, first: Job) -> bool:
        """First words may ride along finals: the engine keeps up with its finals (those of
        the last few seconds, and `first`, the batch's own, waited no longer than
        RIDE_WAIT_S)."""
        waited = time.monotonic() - first.submitted
        return max(waited, self.recent_final_wait_s()) <= RIDE_WAIT_S

    def _peek_live(self) -> Job | None:
        """The most urgent job still wanted, dropping the dead and the stale on the way."""
        now = time.monotonic()
        for job in self._ranked():
            if self._wanted(job, now):
                return job
            self._remove(job)
        return None

    def _wanted(self, job: Job, now: float) -> bool:
        if job.dropped or job.future.done():
            return False
        if job.refresh and now - job.submitted > self.partial_max_wait_s:
            self.dropped_partials += 1
            job.resolve(None)
            return False
        return True

    def _fill(self, batch: list[Job]) -> None:
        """Add compatible waiting jobs to `batch`, waiting up to the batch window for them."""
        deadline = time.monotonic() + self.batch_window_s
        ride = self._riders_welcome(batch[0])
        while True:
            keep: list[Job] = []
            now = time.monotonic()
            for job in self._ranked():
                if job.dropped or job.future.done():
                    self._forget(job)
                elif (len(batch) < self.max_batch_size and job.key == batch[0].key
                      and _joins(job, batch[0], ride)):
                    self._forget(job)
                    if self._wanted(job, now):
                        batch.append(job)
                else:
                    keep.append(job)
            self._queue = keep
            left = deadline - time.monotonic()
            if len(batch) >= self.max_batch_size or left <= 0 or self._closed:
                return
            self._cond.wait(left)

    # load figures ----------------------------------------------------------------------------

    def oldest_final_age_s(self) -> float:
        with self._cond:
            now = time.monotonic()
            return max((now - job.submitted for job in self._queue
                        if not job.partial and job.realtime), default=0.0)

    def recent_final_wait_s(self) -> float:
        """The longest a real-time final waited for a worker in the last few seconds, or is
        waiting now (the admission signal for new live sessions)."""
        now = time.monotonic()
        with self._cond:
            while self._recent_waits and now - self._recent_waits[0][0] > RECENT_S:
                self._recent_waits.popleft()
            recent = max((w for _, w in self._recent_waits), default=0.0)
        return max(recent, self.oldest_final_age_s())

    def final_share(self) -> float:
        """The share of the workers' time in the last `BUSY_S` that went to finals, finished
        or running (a batch's time in the share of its items that are finals, not the first
        words riding along): 1.0 means finals alone kept every worker busy."""
        now = time.monotonic()
        since = now - BUSY_S
        with self._cond:
            while self._final_spans and self._final_spans[0][1] <= since:
                self._final_spans.popleft()
            spans = [*self._final_spans,
                     *((start, now, share) for start, share in self._running_finals.values())]
        return sum((end - max(start, since)) * share
                   for start, end, share in spans) / (self.workers * BUSY_S)

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def lone_final(self) -> bool:
        """The caller's final is the only one: no other final decodes or waits (partials
        may: they are shed or dropped when finals need the workers). Asked by workers."""
        with self._cond:
            return self._busy - self._partial_busy <= 1 and not self._finals_waiting

    @property
    def load(self) -> float:
        """Work per worker: 1.0 means every worker is busy and nothing waits."""
        with self._cond:
            return (self._busy + len(self._queue)) / max(1, self.workers)
