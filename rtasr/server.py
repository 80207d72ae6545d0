"""The websocket transport: accept connections, move bytes between sockets and sessions.

All speech logic lives in session.py and all inference in engine.py; this module owns the
asyncio side: the listening socket, one `Connection` per client (a reader loop, a writer task
and the engine jobs in flight), HTTP answers on the same port, and the server's lifecycle
(start: load and warm the model, then listen; stop: finalize every open session, then close).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import uuid
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from . import static
from .config import Config
from .deepgram import DEEPGRAM_PATH, DeepgramDialect
from .engine import Engine
from .errors import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    FrameTooLargeError,
    OverloadedError,
    ParameterError,
    ProtocolError,
    RtasrError,
)
from .monitor import LoopMonitor
from .protocol import Dialect, End, Error, Flush, Hello, ServerMessage
from .session import Action, Cancel, DecodeJob, Session

log = logging.getLogger(__name__)

WS_PATHS = ("/", "/ws")
FINALS_GRACE_S = 30.0  # how long a closing session waits for its last finals


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: str, kwargs: MutableMapping[str, Any]) -> tuple[str, Any]:
        return f"[{self.extra['session']}] {msg}", kwargs  # type: ignore[index]


@dataclass(frozen=True)
class _Outcome:
    """How a reader loop ended: the close code to send and the error to report first."""

    code: int
    error: RtasrError | None = None


class Connection:
    """One client: the reader loop, the writer task and the engine jobs in flight."""

    def __init__(self, ws: ServerConnection, session: Session, engine: Engine,
                 config: Config, dialect: Dialect) -> None:
        self.ws = ws
        self.session = session
        self.dialect = dialect
        self.engine = engine
        self.config = config
        self.log = SessionLog(log, {"session": session.id})
        self._jobs: dict[DecodeJob, asyncio.Task[None]] = {}
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._stopping = asyncio.Event()

    def shutdown(self) -> None:
        """Ask the connection to finalize and close with 1001 (server going away)."""
        self._stopping.set()

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        reader = asyncio.create_task(self._read())
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                outcome = reader.result()
            else:
                reader.cancel()
                outcome = _Outcome(CLOSE_GOING_AWAY)
            if outcome is not None:
                await self._finish(outcome, writer)
        except Exception:
            self.log.exception("session failed")
            with contextlib.suppress(Exception):
                await self.ws.close(CLOSE_INTERNAL, "internal error")
        finally:
            for task in (reader, stop, writer, *self._jobs.values()):
                task.cancel()
            self.log.info("closed after %.1f s of audio", self.session.duration_s)

    async def _read(self) -> _Outcome | None:
        limit = self.config.max_frame_bytes
        try:
            async for message in self.ws:
                if len(message) > limit:
                    return _Outcome(FrameTooLargeError.close_code or CLOSE_INTERNAL,
                                    FrameTooLargeError(f"frame of {len(message)} bytes is over "
                                                       f"the {limit}-byte limit"))
                if isinstance(message, bytes):
                    self.session.partial_backoff = self.engine.partial_backoff
                    try:
                        self._dispatch(self.session.feed(message))
                    except RtasrError as exc:
                        return _Outcome(exc.close_code or CLOSE_INTERNAL, exc)
                    for text in self.dialect.on_audio(message, self.session.duration_s):
                        self._outbox.put_nowait(text)
                    continue
                try:
                    control = self.dialect.control(message)
                except ProtocolError as exc:
                    self._send(Error(code=exc.code, message=str(exc)))
                    continue
                if isinstance(control, Flush):
                    self._dispatch(self.session.flush())
                elif isinstance(control, End):
                    return _Outcome(CLOSE_NORMAL)
        except ConnectionClosed:
            pass
        return None  # the client went away: nothing to deliver

    async def _finish(self, outcome: _Outcome, writer: asyncio.Task[None]) -> None:
        """Finalize what was spoken, deliver it, report the error if any, then close."""
        self._dispatch(self.session.end())
        await self._await_finals()
        if outcome.error is not None:
            self.log.info("closing with %s: %s", outcome.error.code, outcome.error)
        texts, code, reason = self.dialect.farewell(outcome.code, outcome.error,
                                                    self.session.duration_s)
        for text in texts:
            self._outbox.put_nowait(text)
        self._outbox.put_nowait(None)
        with contextlib.suppress(ConnectionClosed):
            await writer
        await self.ws.close(code, reason)

    async def _await_finals(self) -> None:
        async with asyncio.timeout(FINALS_GRACE_S):
            while self.session.awaiting_finals and self._jobs:
                await asyncio.wait(self._jobs.values(), return_when=asyncio.FIRST_COMPLETED)

    def _send(self, message: ServerMessage) -> None:
        for text in self.dialect.render(message):
            self._outbox.put_nowait(text)

    def _dispatch(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, DecodeJob):
                task = asyncio.create_task(self._decode(action))
                self._jobs[action] = task
                task.add_done_callback(functools.partial(self._forget, action))
            elif isinstance(action, Cancel):
                cancelled = self._jobs.pop(action.job, None)
                if cancelled is not None:
                    cancelled.cancel()
            else:
                self._send(action)

    def _forget(self, job: DecodeJob, _: object) -> None:
        self._jobs.pop(job, None)

    async def _decode(self, job: DecodeJob) -> None:
        try:
            result = await self.engine.transcribe(job.request)
        except RtasrError as exc:
            self._dispatch(self.session.on_failure(job, exc))
            return
        self._dispatch(self.session.on_result(job, result))

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            await self.ws.send(text)


def _json_response(status: HTTPStatus, body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


def _text_response(status: HTTPStatus, text: str) -> Response:
    data = (text + "\n").encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"),
                       ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


class Server:
    """The rtasr server: `await start()`, serve, `await stop()`; or `async with`."""

    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine or Engine(config)
        self._owns_engine = engine is None
        self._ws: WsServer | None = None
        self._connections: set[Connection] = set()
        self.loop_monitor = LoopMonitor()
        self.max_sessions = config.max_sessions or self.engine.max_sessions

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self._ws is not None
        return int(next(iter(self._ws.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        host = "localhost" if self.config.host in ("0.0.0.0", "::", "") else self.config.host
        return f"ws://{host}:{self.port}/ws"

    async def start(self) -> None:
        if self._owns_engine:
            await asyncio.to_thread(self.engine.start)
        self._ws = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._http,
            max_size=self.config.max_frame_bytes * 4,
            compression=None,
            server_header="rtasr",
        )
        self.loop_monitor.start()
        log.info("listening on ws://%s:%d/ws", self.config.host, self.port)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting, finalize and deliver every open session, then close them."""
        if self._ws is None:
            return
        self._ws.close(close_connections=False)
        for conn in list(self._connections):
            conn.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                while self._connections:
                    await asyncio.sleep(0.05)
        self._ws.close()
        await self._ws.wait_closed()
        self._ws = None
        await self.loop_monitor.stop()
        if self._owns_engine:
            await asyncio.to_thread(self.engine.stop)

    @property
    def session_count(self) -> int:
        return len(self._connections)

    def admission_error(self) -> OverloadedError | None:
        """Why a new session would be refused now, or None when it is welcome."""
        limit = self.max_sessions
        if len(self._connections) >= limit:
            return OverloadedError(f"the server is at its limit of {limit} sessions; "
                                   "try again later")
        if self.engine.scheduler.recent_final_wait_s() > self.config.max_final_wait_ms / 1000:
            return OverloadedError("the server is behind on finals; try again later")
        return None

    def health(self) -> dict[str, Any]:
        full = self.admission_error()
        return {
            "status": "full" if full else "ok",
            "ready": full is None,
            "model": self.engine.spec.name,
            "device": self.engine.device,
            "multilingual": self.engine.multilingual,
            "languages": self.engine.languages,
            "sessions": len(self._connections),
            "max_sessions": self.max_sessions,
            "engine": self.engine.stats(),
            "loop_lag_p99_ms": self.loop_monitor.lag_ms(99),
        }

    def _http(self, connection: ServerConnection, request: HttpRequest) -> Response | None:
        path, _, query = request.path.partition("?")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and (path in WS_PATHS or path == DEEPGRAM_PATH):
            return self._check_upgrade(request, path, query)
        if path == "/healthz":
            health = self.health()
            status = HTTPStatus.OK if health["ready"] else HTTPStatus.SERVICE_UNAVAILABLE
            return _json_response(status, health)
        if path == "/ws":
            return _text_response(HTTPStatus.UPGRADE_REQUIRED,
                                  "rtasr: open a websocket on /ws (see docs/protocol.md)")
        found = static.serve_file(path)
        if found is not None:
            return found
        if path == "/":
            return _text_response(HTTPStatus.UPGRADE_REQUIRED,
                                  "rtasr: the web client is not installed; open a websocket "
                                  "on /ws (see docs/protocol.md)")
        return _text_response(HTTPStatus.NOT_FOUND, "not found")

    def _dialect(self, path: str) -> Dialect:
        """The wire protocol the client asked for. Raises ParameterError for bad parameters."""
        route, _, query = path.partition("?")
        cls = DeepgramDialect if route == DEEPGRAM_PATH else Dialect
        dialect = cls(query, default_language=self.engine.language)
        language = dialect.params.language
        if not self.engine.multilingual and language not in (None, "en"):
            raise ParameterError(f"model {self.engine.spec.name} is English-only: "
                                 f"language {language!r} is not available")
        return dialect

    def _check_upgrade(self, request: HttpRequest, path: str, query: str) -> Response | None:
        """Refuse a websocket before the handshake: a missing or wrong API key (401), or,
        on the Deepgram endpoint, bad parameters (400, as Deepgram answers them)."""
        if self.config.api_keys and not self._authorized(request, query):
            log.info("refused %s: missing or wrong API key", path)
            return _json_response(HTTPStatus.UNAUTHORIZED, {
                "error": "unauthorized",
                "message": "a valid API key is required: send 'Authorization: Bearer KEY' "
                           "(or 'Token KEY'), or ?token=KEY"})
        if path == DEEPGRAM_PATH:
            try:
                self._dialect(request.path)
            except ParameterError as exc:
                response = _json_response(HTTPStatus.BAD_REQUEST, {
                    "err_code": "Bad Request", "err_msg": str(exc)})
                response.headers["dg-error"] = str(exc)
                return response
        return None

    def _authorized(self, request: HttpRequest, query: str) -> bool:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        offered = parse_qs(query).get("token", [])
        if scheme.lower() in ("bearer", "token") and credential.strip():
            offered.append(credential.strip())
        return any(hmac.compare_digest(o.encode(), k.encode())
                   for o in offered for k in self.config.api_keys)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        session_id = uuid.uuid4().hex[:12]
        slog = SessionLog(log, {"session": session_id})
        try:
            dialect = self._dialect(ws.request.path)
            refusal = self.admission_error()
            if refusal is not None:
                texts, code, reason = dialect.farewell(refusal.close_code or CLOSE_INTERNAL,
                                                       refusal, 0.0)
                slog.info("refused: %s", refusal)
                for text in texts:
                    await ws.send(text)
                await ws.close(code, reason)
                return
        except RtasrError as exc:
            slog.info("refused: %s", exc)
            await ws.send(Error(code=exc.code, message=str(exc)).to_json())
            await ws.close(exc.close_code or CLOSE_INTERNAL, exc.code)
            return
        params = dialect.params
        config = self.config.replace(beam_size=self.engine.beam_size,
                                     context_chars=self.engine.context_chars,
                                     **dialect.config_changes(self.config.pause_ms))
        session = Session(config, params, session_id, params.language)
        conn = Connection(ws, session, self.engine, self.config, dialect)
        self._connections.add(conn)
        slog.info("open (%s): %d Hz %s, language %s", dialect.name, params.sample_rate,
                  params.encoding, params.language or "auto")
        try:
            for text in dialect.greeting(Hello(session_id, self.engine.spec.name, params)):
                await ws.send(text)
            await conn.run()
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(conn)
