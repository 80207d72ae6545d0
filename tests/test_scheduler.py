"""The engine's queue policy, without a model: order, replacement, shedding, batching."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from rtasr.engine import scheduler
from rtasr.engine.scheduler import BUSY_S, Job, Scheduler


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def settle(loop: asyncio.AbstractEventLoop) -> None:
    """Run the callbacks that workers scheduled with call_soon_threadsafe."""
    loop.run_until_complete(asyncio.sleep(0))


def make(loop: asyncio.AbstractEventLoop, name: str, *, partial: bool = False,
         session: str = "s", key: object = "k", realtime: bool = True,
         refresh: bool = False) -> Job:
    return Job(name, partial=partial, session=session, key=key, loop=loop, realtime=realtime,
               refresh=refresh)


def names(batch: list[Job] | None) -> list[str]:
    assert batch is not None
    return [job.payload for job in batch]


def test_finals_before_partials_oldest_final_first(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=2)
    for job in (make(loop, "p1", partial=True, session="a"), make(loop, "f1", session="b"),
                make(loop, "p2", partial=True, session="c"), make(loop, "f2", session="d")):
        s.submit(job)
    order = []
    for _ in range(4):
        batch = s.take()
        order += names(batch)
        s.done(batch)
    assert order == ["f1", "f2", "p2", "p1"]  # first words: the newest first


def test_a_final_is_alone_while_no_other_final_decodes_or_waits(
        loop: asyncio.AbstractEventLoop) -> None:
    """What buys a final the spare-capacity window and beam: a partial decoding beside it
    does not count (it yields to finals), another final decoding or waiting does."""
    s = Scheduler(workers=2)
    s.submit(make(loop, "p", partial=True, session="a"))
    partial = s.take()
    s.submit(make(loop, "f1", session="b"))
    first = s.take()
    assert names(first) == ["f1"] and s.lone_final
    s.submit(make(loop, "f2", session="c"))
    assert not s.lone_final  # f2 waits
    s.done(partial)
    second = s.take()
    assert names(second) == ["f2"] and not s.lone_final  # f1 and f2 decode
    s.done(first)
    assert s.lone_final


def test_newer_partial_replaces_queued_one(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1)
    old, new = make(loop, "old", partial=True), make(loop, "new", partial=True)
    s.submit(old)
    s.submit(new)
    assert old.future.done() and old.future.result() is None
    assert names(s.take()) == ["new"]
    assert s.queue_depth == 0


def test_partial_is_shed_while_finals_wait_and_workers_are_busy(
        loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1)
    s.submit(make(loop, "running"))
    running = s.take()
    assert names(running) == ["running"]  # the only worker is busy now
    s.submit(make(loop, "final", session="b"))
    shed = make(loop, "partial", partial=True, session="c", refresh=True)
    s.submit(shed)
    assert shed.future.done() and shed.future.result() is None
    assert s.dropped_partials == 1
    s.done(running)
    assert names(s.take()) == ["final"]


def test_first_words_ride_along_a_batch_of_finals(loop: asyncio.AbstractEventLoop) -> None:
    """Under load finals keep every worker busy and partials never find spare capacity: an
    utterance's first words then join a batch of real-time finals (same key, room left)
    instead of waiting or being shed. A refresh does not, nor a batch of a file's finals."""
    s = Scheduler(workers=1, max_batch_size=4)
    s.submit(make(loop, "running"))
    running = s.take()
    s.submit(make(loop, "final", session="b"))
    first = make(loop, "first", partial=True, session="c")
    refresh = make(loop, "refresh", partial=True, session="d", refresh=True)
    other = make(loop, "other key", partial=True, session="e", key="other")
    for job in (first, refresh, other):
        s.submit(job)
    assert not first.future.done()  # queued, not shed, though a final waits
    assert refresh.future.done() and refresh.future.result() is None  # shed
    s.done(running)
    assert names(s.take()) == ["final", "first"]


def test_first_words_stop_riding_once_finals_wait_too_long(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past RIDE_WAIT_S of final waits the engine is saturated: riders would only make every
    final later, so first words no longer ride. They are not shed either: they keep their
    place until a worker is spare (shed, they would come back an interval of speech later,
    at the end of the queue)."""
    now = [100.0]
    monkeypatch.setattr(scheduler, "time", SimpleNamespace(monotonic=lambda: now[0]))
    s = Scheduler(workers=1, max_batch_size=4)
    s.submit(make(loop, "running"))
    running = s.take()
    s.submit(make(loop, "late", session="b"))
    now[0] += scheduler.RIDE_WAIT_S + 0.1
    kept = make(loop, "kept", partial=True, session="c")
    s.submit(kept)
    assert not kept.future.done() and s.dropped_partials == 0
    s.done(running)
    s.submit(make(loop, "first", partial=True, session="d"))
    late = s.take()
    assert names(late) == ["late"]  # it waited too long: nobody rides along
    s.done(late)
    assert names(s.take()) == ["first", "kept"]


def test_first_words_do_not_ride_along_a_files_finals(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1, max_batch_size=4)
    s.submit(make(loop, "file final", realtime=False))
    s.submit(make(loop, "first", partial=True, session="c"))
    assert names(s.take()) == ["file final"]


def test_partial_queues_when_a_worker_is_free(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=2)
    s.submit(make(loop, "final"))
    kept = make(loop, "partial", partial=True, session="c")
    s.submit(kept)
    assert not kept.future.done()


def test_an_utterances_first_partial_goes_before_later_ones(
        loop: asyncio.AbstractEventLoop) -> None:
    """Under load the first words of an utterance matter more than a refresh of words already
    shown: a partial of an utterance without text goes before older partials of others."""
    s = Scheduler(workers=2)
    s.submit(make(loop, "refresh", partial=True, session="a", refresh=True))
    s.submit(make(loop, "first", partial=True, session="b"))
    order = []
    for _ in range(2):
        batch = s.take()
        order += names(batch)
        s.done(batch)
    assert order == ["first", "refresh"]


def test_the_newest_first_words_go_first(loop: asyncio.AbstractEventLoop) -> None:
    """When first words queue up, the utterance that began last gets its words first (the
    longest waiting is the nearest its final); refreshes go oldest first."""
    s = Scheduler(workers=1, partial_max_wait_s=5.0)
    for name, session, refresh in (("old first", "a", False), ("new first", "b", False),
                                   ("old refresh", "c", True), ("new refresh", "d", True)):
        s.submit(make(loop, name, partial=True, session=session, refresh=refresh))
    order = []
    for _ in range(4):
        batch = s.take()
        order += names(batch)
        s.done(batch)
    assert order == ["new first", "old first", "old refresh", "new refresh"]


def test_stale_partial_is_dropped(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1, partial_max_wait_s=0.01)
    stale = make(loop, "stale", partial=True, refresh=True)
    s.submit(stale)
    time.sleep(0.02)
    s.submit(make(loop, "final", session="b"))
    final = s.take()
    assert names(final) == ["final"]
    s.done(final)
    threading.Timer(0.05, s.close).start()
    assert s.take() is None  # the stale partial was skipped; nothing else to do
    settle(loop)
    assert stale.future.result() is None


def test_first_words_wait_past_the_partial_max_wait(loop: asyncio.AbstractEventLoop) -> None:
    """A refresh that waited too long is moot (a newer one shows more); an utterance's first
    words are not: dropped, the next try would queue again from the back."""
    s = Scheduler(workers=1, partial_max_wait_s=0.01)
    first = make(loop, "first", partial=True)
    s.submit(first)
    time.sleep(0.02)
    s.submit(make(loop, "final", session="b"))
    final = s.take()
    assert names(final) == ["final"]
    s.done(final)
    threading.Timer(1.0, s.close).start()  # a dropped partial would leave take() waiting
    assert names(s.take()) == ["first"]
    assert s.dropped_partials == 0


def test_a_batch_of_first_words_takes_no_refreshes(loop: asyncio.AbstractEventLoop) -> None:
    """On a CPU every item makes a batch slower: first words go in a batch of their own, and
    the refreshes that waited with them follow in the next."""
    s = Scheduler(workers=1, max_batch_size=4)
    s.submit(make(loop, "refresh-a", partial=True, session="a", refresh=True))
    s.submit(make(loop, "first-b", partial=True, session="b"))
    s.submit(make(loop, "first-c", partial=True, session="c"))
    s.submit(make(loop, "refresh-d", partial=True, session="d", refresh=True))
    batch = s.take()
    assert names(batch) == ["first-c", "first-b"]
    s.done(batch)
    assert names(s.take()) == ["refresh-a", "refresh-d"]


def test_cancelled_job_is_skipped(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1)
    gone, kept = make(loop, "gone"), make(loop, "kept", session="b")
    s.submit(gone)
    s.submit(kept)
    s.cancel(gone)
    assert names(s.take()) == ["kept"]


def test_batch_takes_compatible_jobs_in_priority_order(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1, max_batch_size=3)
    s.submit(make(loop, "p-a", partial=True, session="a", refresh=True))
    s.submit(make(loop, "f-other", session="b", key="other"))
    s.submit(make(loop, "f-b", session="c"))
    s.submit(make(loop, "f-c", session="d"))
    s.submit(make(loop, "p-e", partial=True, session="e", refresh=True))
    s.submit(make(loop, "f-d", session="f"))
    s.submit(make(loop, "f-e", session="g"))
    first = s.take()
    assert names(first) == ["f-other"]  # the most urgent, alone: nothing shares its key
    s.done(first)
    second = s.take()
    assert names(second) == ["f-b", "f-c", "f-d"]  # at most 3
    s.done(second)
    third = s.take()
    assert names(third) == ["f-e"]  # a batch of finals takes no partials
    s.done(third)
    assert names(s.take()) == ["p-a", "p-e"]
    assert dict(s.batch_sizes) == {1: 2, 3: 1, 2: 1}


def test_partials_leave_a_worker_free_for_finals(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=2)
    s.submit(make(loop, "p1", partial=True, session="a"))
    s.submit(make(loop, "p2", partial=True, session="b"))
    assert names(s.take()) == ["p2"]  # one worker on a partial; the other is kept free
    threading.Timer(0.2, lambda: s.submit(make(loop, "final", session="c"))).start()
    t0 = time.monotonic()
    assert names(s.take()) == ["final"]  # not p1, which waits for the first worker
    assert time.monotonic() - t0 >= 0.15


def test_first_words_take_the_free_worker_beside_a_decoding_final(
        loop: asyncio.AbstractEventLoop) -> None:
    """Under load some final is nearly always decoding: an utterance's first words may start
    beside it while no final waits; a refresh waits until no final or partial decodes."""
    s = Scheduler(workers=2, partial_max_wait_s=5.0)
    s.submit(make(loop, "final", session="a"))
    running = s.take()
    s.submit(make(loop, "first", partial=True, session="b"))
    s.submit(make(loop, "refresh", partial=True, session="c", refresh=True))
    threading.Timer(1.0, lambda: s.done(running)).start()  # type: ignore[arg-type]
    t0 = time.monotonic()
    first = s.take()
    assert names(first) == ["first"] and time.monotonic() - t0 < 0.5  # not after the final
    threading.Timer(0.3, lambda: s.done(first)).start()  # type: ignore[arg-type]
    assert names(s.take()) == ["refresh"]
    assert time.monotonic() - t0 >= 0.95  # once the final and the first words are done


def test_batch_window_waits_for_more_requests(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1, max_batch_size=4, batch_window_s=0.5)
    s.submit(make(loop, "first"))
    threading.Timer(0.05, lambda: s.submit(make(loop, "second", session="b"))).start()
    t0 = time.monotonic()
    assert names(s.take()) == ["first", "second"]
    assert time.monotonic() - t0 < 0.5 + 0.2


def test_close_returns_waiting_jobs_and_refuses_more(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1)
    s.submit(make(loop, "a"))
    s.submit(make(loop, "b", session="b"))
    assert sorted(job.payload for job in s.close()) == ["a", "b"]
    assert s.take() is None
    assert not s.submit(make(loop, "late"))


def test_final_wait_figures(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1)
    assert s.recent_final_wait_s() == 0.0
    s.submit(make(loop, "f"))
    time.sleep(0.05)
    assert s.oldest_final_age_s() >= 0.05
    s.take()
    assert s.oldest_final_age_s() == 0.0
    assert s.recent_final_wait_s() >= 0.05  # remembered after it started
    assert s.load == 1.0


def test_final_share_is_the_workers_time_that_finals_took_lately(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(scheduler, "time", SimpleNamespace(monotonic=lambda: now[0]))
    s = Scheduler(workers=2)
    s.submit(make(loop, "p", partial=True))
    partial = s.take()
    now[0] += 4.0
    s.done(partial)  # partials are not counted
    assert s.final_share() == 0.0
    s.submit(make(loop, "f"))
    final = s.take()
    now[0] += 2.0
    assert s.final_share() == pytest.approx(2.0 / (2 * BUSY_S))  # running: counted so far
    now[0] += 2.0
    s.done(final)
    assert s.final_share() == pytest.approx(4.0 / (2 * BUSY_S))
    now[0] += BUSY_S - 1.0  # 1 s of it is still within BUSY_S
    assert s.final_share() == pytest.approx(1.0 / (2 * BUSY_S))
    now[0] += 1.0
    assert s.final_share() == 0.0


def test_first_words_riding_along_do_not_count_as_finals_time(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of one final and one first-words partial counts half its time: riders must
    not make the engine look `behind` (which drops the context after a pause)."""
    now = [100.0]
    monkeypatch.setattr(scheduler, "time", SimpleNamespace(monotonic=lambda: now[0]))
    s = Scheduler(workers=1, max_batch_size=4)
    s.submit(make(loop, "f"))
    s.submit(make(loop, "first", partial=True, session="b"))
    batch = s.take()
    assert names(batch) == ["f", "first"]
    now[0] += 2.0
    assert s.final_share() == pytest.approx(1.0 / BUSY_S)  # running
    s.done(batch)
    assert s.final_share() == pytest.approx(1.0 / BUSY_S)


def drain(s: Scheduler, n: int) -> list[str]:
    """Take and finish `n` batches; the payloads in the order they were handed out."""
    order = []
    for _ in range(n):
        batch = s.take()
        order += names(batch)
        assert batch is not None
        s.done(batch)
    return order


def test_realtime_finals_go_before_a_faster_than_real_time_backlog(
        loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1, max_batch_size=4)
    for i in range(6):
        s.submit(make(loop, f"file{i}", session="file", realtime=False))
    s.submit(make(loop, "live", session="live"))
    s.submit(make(loop, "live-partial", session="live2", partial=True, refresh=True))
    first = s.take()
    assert names(first) == ["live"]  # alone: a realtime batch takes no file finals (slower)
    assert first is not None
    s.done(first)
    assert drain(s, 3) == ["file0", "file1", "file2", "file3", "file4", "file5", "live-partial"]


def test_finals_are_served_round_robin_across_sessions(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1)
    for i in range(3):
        s.submit(make(loop, f"a{i}", session="a", realtime=False))
    for i in range(2):
        s.submit(make(loop, f"b{i}", session="b", realtime=False))
    assert drain(s, 5) == ["a0", "b0", "a1", "b1", "a2"]
    for i in range(3):  # the same among realtime sessions: a burst from one waits its turn
        s.submit(make(loop, f"c{i}", session="c"))
    s.submit(make(loop, "d0", session="d"))
    assert drain(s, 4) == ["c0", "d0", "c1", "c2"]


def test_a_file_backlog_is_not_the_admission_signal(loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=1)
    backlog = [make(loop, f"file{i}", session="file", realtime=False) for i in range(3)]
    for job in backlog:
        job.submitted -= 10.0  # waited 10 s already
        s.submit(job)
    assert s.oldest_final_age_s() == 0.0 and s.recent_final_wait_s() == 0.0
    drain(s, 1)
    assert s.recent_final_wait_s() == 0.0  # its wait is the file's own business
    live = make(loop, "live", session="live")
    live.submitted -= 2.0
    s.submit(live)
    assert s.oldest_final_age_s() >= 2.0 and s.recent_final_wait_s() >= 2.0
    assert drain(s, 1) == ["live"]
    assert s.recent_final_wait_s() >= 2.0


class WatchedCondition(threading.Condition):
    """A Condition that counts the threads waiting on it, so a test can wait for them."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.changed = threading.Condition()

    def wait(self, timeout: float | None = None) -> bool:
        # The caller holds the lock until super().wait() releases it, so a thread that sees
        # the count go up cannot notify before this waiter is registered.
        with self.changed:
            self.waiting += 1
            self.changed.notify_all()
        try:
            return super().wait(timeout)
        finally:
            with self.changed:
                self.waiting -= 1
                self.changed.notify_all()

    def wait_for_waiters(self, n: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.waiting >= n, timeout=10)


def test_a_worker_filling_a_batch_does_not_swallow_the_wakeup_of_an_idle_one(
        loop: asyncio.AbstractEventLoop) -> None:
    s = Scheduler(workers=2, max_batch_size=4, batch_window_s=0.3)
    cond = s._cond = WatchedCondition()
    s.submit(make(loop, "k1-job", key="k1"))
    batches: dict[str, list[Job] | None] = {}
    took = {name: threading.Event() for name in ("filling", "idle")}

    def worker(name: str) -> None:
        batches[name] = s.take()  # and then never `done`: a decode that outlasts the test
        took[name].set()

    filling = threading.Thread(target=worker, args=("filling",))
    filling.start()
    cond.wait_for_waiters(1)  # took k1-job; waits the batch window for more with key k1
    idle = threading.Thread(target=worker, args=("idle",))
    idle.start()
    cond.wait_for_waiters(2)  # nothing queued: sleeps in take()
    s.submit(make(loop, "k2-job", session="b", key="k2"))
    try:
        assert took["idle"].wait(timeout=5), "the idle worker slept through a queued job"
        assert names(batches["idle"]) == ["k2-job"]
        assert took["filling"].wait(timeout=5)
        assert names(batches["filling"]) == ["k1-job"]
    finally:
        s.close()
        filling.join()
        idle.join()


def test_a_cancelled_job_leaves_the_load_figures_at_once(loop: asyncio.AbstractEventLoop) -> None:
    """A closed session's jobs no longer count: not in the finals waiting, their age, the
    lone-final test or the load, before any worker comes by."""
    s = Scheduler(workers=1)
    running = make(loop, "running", session="a")
    s.submit(running)
    assert s.take() == [running]
    gone = make(loop, "gone", session="b")
    gone.submitted -= 5.0  # it has waited a while
    gone_partial = make(loop, "gone-partial", partial=True, session="b")
    s.submit(gone_partial)  # before the final: not shed
    s.submit(gone)
    assert not s.lone_final and s.oldest_final_age_s() >= 5.0 and s.load == 3.0
    s.cancel(gone)
    s.cancel(gone_partial)
    assert s.queue_depth == 0 and s.load == 1.0
    assert s.lone_final and s.oldest_final_age_s() == 0.0
    assert s.recent_final_wait_s() < 5.0
    later = make(loop, "refresh", partial=True, session="b")
    s.submit(later)  # the cancelled partial is not "queued" for its session any more
    s.done([running])
    assert s.take() == [later]


def test_lone_final_reads_the_counts_under_the_lock(loop: asyncio.AbstractEventLoop) -> None:
    """Worker threads ask `lone_final` while the loop submits: it must take the lock."""
    s = Scheduler(workers=2)
    with s._cond:
        asked = threading.Thread(target=lambda: s.lone_final, daemon=True)
        asked.start()
        asked.join(0.2)
        assert asked.is_alive(), "lone_final read the queue without the lock"
    asked.join(1)


def test_no_partial_starts_while_a_final_waits_for_side_work(
        loop: asyncio.AbstractEventLoop) -> None:
    """A speaker embedding that a final waits for runs beside the decodes: while one is asked
    for, partials wait, so it has the CPU a partial would take."""
    s = Scheduler(workers=2)
    s.side_work(True)
    s.submit(make(loop, "p1", partial=True, session="a"))
    threading.Timer(0.2, lambda: s.side_work(False)).start()
    t0 = time.monotonic()
    assert names(s.take()) == ["p1"]
    assert time.monotonic() - t0 >= 0.15
    s.side_work(True)
    s.submit(make(loop, "final", session="b"))
    assert names(s.take()) == ["final"]  # finals do not wait for it
