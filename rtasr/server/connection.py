"""One client connection: the reader loop, the writer task and the engine jobs in flight.

The connection moves bytes between the socket and the sans-I/O `Session`, through the
client's `Dialect`, and enforces the per-session limits: frame size, audio rate (faster than
real time only up to `--max-speed`), finals waiting on the engine (at most
`MAX_FINALS_WAITING`, in_flight.py) (past either the reader stops reading, so TCP pushes back
and nothing said is dropped), idle time, session length and unsent messages. A client that
leaves `--max-unsent-messages` unread is ended (`slow_consumer`, 1008) rather than buffered
for without end, but nothing queued for it is dropped: whatever ends a session, the finals its
audio earned are queued after what it has not read, then the error and the close, and are
delivered if it reads again within SEND_GRACE_S.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

from ..config import Config
from ..core.actions import Action
from ..core.engine_api import Load
from ..core.protocol import (
    AudioIn,
    Dialect,
    End,
    Error,
    Final,
    Flush,
    Reconfigure,
    ServerMessage,
    StreamParams,
)
from ..core.session import Session
from ..errors import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    FinalTimeoutError,
    FrameTooLargeError,
    IdleTimeoutError,
    ParameterError,
    ProtocolError,
    RtasrError,
    SessionTooLongError,
    SlowConsumerError,
)
from .in_flight import Decodes
from .interfaces import Embed, EngineLike, SessionLog, Socket
from .metrics import Metrics

log = logging.getLogger(__name__)

FINALS_GRACE_S = 30.0  # how long a closing session waits for its last finals
SEND_GRACE_S = 10.0  # how long the last messages may take to go out
BURST_S = 5.0  # audio a client may send ahead of the --max-speed budget
REALTIME_SLACK = 1.25  # a client sending audio up to this much faster than it plays is live
MARKS_S = 60.0  # how far back arrival times are kept for the final-latency metric


@dataclass(frozen=True)
class Outcome:
    """How a session ends: the close code to send and the error to report first."""

    code: int
    error: RtasrError | None = None
    finalize: bool = True  # False after a bug: the session's state is not to be trusted


class Connection:
    def __init__(self, ws: Socket, session: Session, engine: EngineLike,
                 config: Config, dialect: Dialect, metrics: Metrics,
                 settings: Callable[[Reconfigure], tuple[Config, StreamParams]] | None = None,
                 *, embed: Embed | None = None) -> None:
        self.ws = ws
        self.settings = settings  # a dialect's Reconfigure, checked (gateway.py)
        self.session = session
        self.dialect = dialect
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.log = SessionLog(log, {"session": session.id})
        self.in_flight = Decodes(session, engine.transcribe, self._dispatch, self.log,
                                 self._failed, embed)
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        self._finals_by = math.inf  # loop time; moved up by a server shutdown
        self._hurry = loop.create_future()  # done once _finals_by moved
        self._opened = time.monotonic()
        self._marks: collections.deque[tuple[float, float]] = collections.deque()

    def shutdown(self, outcome: Outcome | None = None, finals_by: float | None = None) -> None:
        """Finalize and close: 1001 (server going away) unless told otherwise. `finals_by`
        (loop time): stop waiting for the model then, even if already finishing."""
        if not self._stop.done():
            self._stop.set_result(outcome or Outcome(CLOSE_GOING_AWAY))
        if finals_by is not None and finals_by < self._finals_by:
            self._finals_by = finals_by
            if not self._hurry.done():
                self._hurry.set_result(None)

    def _failed(self, exc: Exception) -> None:
        """A bug in handling a decode (logged by `Decodes`): this session ends with 1011."""
        self.shutdown(Outcome(CLOSE_INTERNAL, RtasrError(
            f"internal error ({type(exc).__name__}); the session cannot go on"), finalize=False))

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        reader = asyncio.create_task(self._read())
        try:
            await asyncio.wait({reader, self._stop}, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.done():
                reader.cancel()
                outcome: Outcome | None = self._stop.result()
            else:
                outcome = reader.result()
            if outcome is not None:
                await self._finish(outcome, writer)
        except Exception:
            self.log.exception("session failed")
            with contextlib.suppress(Exception):
                await self.ws.close(CLOSE_INTERNAL, "internal error")
        finally:
            for task in (reader, writer):
                task.cancel()
            self.in_flight.cancel()
            self.log.info("closed after %.1f s of audio", self.session.duration_s)

    # reading -------------------------------------------------------------------------------

    async def _read(self) -> Outcome | None:
        try:
            while True:
                try:
                    async with asyncio.timeout(self.config.idle_timeout_s):
                        message = await self.ws.recv()
                except TimeoutError:
                    return Outcome(IdleTimeoutError.close_code or CLOSE_INTERNAL,
                                   IdleTimeoutError(f"no audio or keep-alive for "
                                                    f"{self.config.idle_timeout_s:g} s"))
                outcome = self._limits(message)
                if outcome is None:
                    outcome = self._take(message)
                if outcome is not None:
                    return outcome
                await self.in_flight.room()
                await self._pace()
        except ConnectionClosed:
            return None  # the client went away: nothing to deliver

    def _limits(self, message: str | bytes) -> Outcome | None:
        limit = self.config.max_frame_bytes
        if len(message) > limit:
            return Outcome(FrameTooLargeError.close_code or CLOSE_INTERNAL,
                           FrameTooLargeError(f"frame of {len(message)} bytes is over the "
                                              f"{limit}-byte limit"))
        if time.monotonic() - self._opened > self.config.max_session_s:
            return Outcome(SessionTooLongError.close_code or CLOSE_INTERNAL,
                           SessionTooLongError(f"sessions last at most "
                                               f"{self.config.max_session_s:g} s"))
        return None

    def _take(self, message: str | bytes) -> Outcome | None:
        """Hand one frame to the session; an Outcome when it ends the session."""
        if isinstance(message, bytes):
            return self._audio(message)
        try:
            control = self.dialect.control(message)
        except ProtocolError as exc:
            self._send(Error(code=exc.code, message=str(exc)))
            self.metrics.errors.labels(exc.code).inc()
            return None
        for text in self.dialect.replies():
            self._put(text)
        if isinstance(control, AudioIn):
            return self._audio(control.data)
        if isinstance(control, Flush):
            self._dispatch(self.session.flush())
        elif isinstance(control, Reconfigure):
            self._reconfigure(control)
        elif isinstance(control, End):
            return Outcome(CLOSE_NORMAL)
        return None

    def _audio(self, message: bytes) -> Outcome | None:
        # A client well ahead of real time (a file) has its decodes wait behind live
        # sessions' finals (scheduler.py), and its backlog does not refuse new sessions.
        live_s = (time.monotonic() - self._opened) * REALTIME_SLACK + BURST_S
        load = Load(partial_backoff=self.engine.partial_backoff, behind=self.engine.behind,
                    realtime=self.session.duration_s <= live_s)
        before = self.session.duration_s
        try:
            self._dispatch(self.session.feed(message, load))
        except RtasrError as exc:
            return Outcome(exc.close_code or CLOSE_INTERNAL, exc)
        self.metrics.audio_seconds.inc(self.session.duration_s - before)
        position = self.session.duration_s
        self._marks.append((position, time.monotonic()))
        while self._marks[0][0] < position - MARKS_S:  # bounded on endless silence too
            self._marks.popleft()
        for text in self.dialect.on_audio(message, self.session.duration_s):
            self._put(text)
        return None

    def _reconfigure(self, change: Reconfigure) -> None:
        """The client's new settings, at any time: checked, acknowledged, then taken by the
        session from now on (a change of how turns end first ends the open one)."""
        try:
            if self.settings is None:
                raise ParameterError("this protocol has no session settings")
            config, params = self.settings(change)
        except ParameterError as exc:
            self._send(Error(code=exc.code, message=str(exc)))
            return
        for text in self.dialect.reconfigured(change):
            self._put(text)
        if change.flush:
            self._dispatch(self.session.flush())
        self._dispatch(self.session.retune(config, params))

    async def _pace(self) -> None:
        """Stop reading while the client is more than BURST_S ahead of --max-speed; else
        yield once, so the writer sends what a burst of frames queued (unsent messages
        count only where the client does not read them)."""
        allowed = (time.monotonic() - self._opened) * self.config.max_speed + BURST_S
        ahead = self.session.duration_s - allowed
        await asyncio.sleep(max(0.0, ahead / self.config.max_speed))

    # finishing -----------------------------------------------------------------------------

    async def _finish(self, outcome: Outcome, writer: asyncio.Task[None]) -> None:
        """Finalize what was spoken, deliver it, report the error if any, then close."""
        if outcome.finalize:
            self._dispatch(self.session.end())
            try:
                await self._await_finals()
            except TimeoutError:
                self._report_missing_finals()
        if outcome.error is not None:
            self.log.info("closing with %s: %s", outcome.error.code, outcome.error)
            self.metrics.errors.labels(outcome.error.code).inc()
        texts, code, reason = self.dialect.farewell(outcome.code, outcome.error,
                                                    self.session.duration_s)
        for text in texts:
            self._outbox.put_nowait(text)
        self._outbox.put_nowait(None)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(SEND_GRACE_S):  # a client that stopped reading
                await writer
        await self.ws.close(code, reason)

    async def _await_finals(self) -> None:
        """Wait for the session's last finals, at most FINALS_GRACE_S or until `finals_by`
        of a server shutdown. Raises TimeoutError."""
        loop = asyncio.get_running_loop()
        until = loop.time() + FINALS_GRACE_S
        while self.session.awaiting_finals and self.in_flight.tasks:
            left = min(until, self._finals_by) - loop.time()
            if left <= 0:
                raise TimeoutError
            waits = {*self.in_flight.tasks.values(),
                     *(() if self._hurry.done() else (self._hurry,))}
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)

    def _report_missing_finals(self) -> None:
        """The model did not answer in time: say so (log, metric, client) instead of closing
        as if every final had come."""
        missing = sorted({job.utterance for job in self.in_flight.tasks})
        error = FinalTimeoutError(f"{len(missing)} utterance(s) ({', '.join(map(str, missing))}) "
                                  "were not transcribed in time: their finals will not come")
        self.log.warning("%s: %s", error.code, error)
        self.metrics.errors.labels(error.code).inc()
        self._send(Error(code=error.code, message=str(error)))

    # sending -------------------------------------------------------------------------------

    def _send(self, message: ServerMessage) -> None:
        if isinstance(message, Final):
            self.metrics.utterances.inc()
            heard = next((t for pos, t in self._marks if pos >= message.end), None)
            if heard is not None:
                self.metrics.final_latency.observe(time.monotonic() - heard)
            while self._marks and self._marks[0][0] < message.end:
                self._marks.popleft()
        for text in self.dialect.render(message):
            self._put(text)

    def _put(self, text: str) -> None:
        """Queue `text` for the writer. At --max-unsent-messages the session ends
        (`slow_consumer`); what is queued then, and its last finals, stay queued."""
        if self._outbox.qsize() >= self.config.max_unsent_messages and not self._stop.done():
            self.log.info("slow consumer: %d messages unread", self._outbox.qsize())
            self.shutdown(Outcome(SlowConsumerError.close_code or CLOSE_INTERNAL,
                                  SlowConsumerError(f"{self._outbox.qsize()} messages unread; "
                                                    "the client is not reading")))
        self._outbox.put_nowait(text)

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            await self.ws.send(text)

    # decoding ------------------------------------------------------------------------------

    def _dispatch(self, actions: Iterable[Action]) -> None:
        """The session's actions: its decodes started or cancelled, its messages sent."""
        for message in self.in_flight.start(actions):
            self._send(message)
        if not self.session.awaiting_finals:
            speaking = self.session.segmenter.open_utterance
            for text in self.dialect.settled(None if speaking is None else speaking.index):
                self._put(text)
