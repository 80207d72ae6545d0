"""The websocket transport: accept connections, move bytes between sockets and sessions.

All speech logic lives in session.py and all inference in engine.py; this module owns the
asyncio side: the listening socket, one `Connection` per client (a reader loop, a writer task
and the engine jobs in flight), HTTP answers on the same port, and the server's lifecycle
(start: load and warm the model, then listen; stop: finalize every open session, then close).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
import uuid
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
from .connection import Connection, SessionLog
from .deepgram import DEEPGRAM_PATH, DeepgramDialect
from .engine import Engine
from .errors import CLOSE_INTERNAL, ConfigError, OverloadedError, ParameterError, RtasrError
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .monitor import LoopMonitor
from .protocol import Dialect, Error, Hello
from .session import Session

log = logging.getLogger(__name__)
# websockets logs request lines at DEBUG, and a request line may carry ?token=KEY.
logging.getLogger("websockets").setLevel(logging.INFO)

WS_PATHS = ("/", "/ws")


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
        self.metrics = Metrics()
        self._idle = asyncio.Event()  # set while no session is open
        self._idle.set()

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
        return f"{'wss' if self.config.certfile else 'ws'}://{host}:{self.port}/ws"

    def _tls(self) -> ssl.SSLContext | None:
        if not self.config.certfile:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.config.certfile, self.config.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load --certfile/--keyfile: {exc}") from None
        return context

    async def start(self) -> None:
        tls = self._tls()  # a bad certificate fails before the model loads
        if self._owns_engine:
            await asyncio.to_thread(self.engine.start)
        self._ws = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._http,
            ssl=tls,
            max_size=self.config.max_frame_bytes * 4,
            max_queue=16,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=self.config.ping_interval_s,
            compression=None,
            server_header="rtasr",
        )
        self.metrics.watch(self.engine, lambda: len(self._connections))
        self.loop_monitor.start()
        scheme = "wss" if tls else "ws"
        log.info("listening on %s://%s:%d/ws%s", scheme, self.config.host, self.port,
                 f" ({len(self.config.api_keys)} API keys)" if self.config.api_keys else "")

    async def stop(self) -> None:
        """Stop accepting, finalize and deliver every open session (within
        --shutdown-grace-s), then close them."""
        if self._ws is None:
            return
        self._ws.close(close_connections=False)
        for conn in list(self._connections):
            conn.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.shutdown_grace_s):
                await self._idle.wait()
        self._ws.close()
        await self._ws.wait_closed()
        self._ws = None
        self.metrics.unwatch(self.engine)
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
        if path == "/metrics":
            body = self.metrics.render()
            headers = Headers([("Content-Type", CONTENT_TYPE_LATEST),
                               ("Content-Length", str(len(body)))])
            return Response(HTTPStatus.OK.value, "OK", headers, body)
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
        self.engine.check_language(dialect.params.language, dialect.params.task)
        return dialect

    def _check_upgrade(self, request: HttpRequest, path: str, query: str) -> Response | None:
        """Refuse a websocket before the handshake: a missing or wrong API key (401), or,
        on the Deepgram endpoint, bad parameters (400, as Deepgram answers them)."""
        origin = request.headers.get("Origin")
        allowed = self.config.allowed_origins
        if origin is not None and allowed and origin not in allowed and "*" not in allowed:
            log.info("refused %s: origin %s is not allowed", path, origin)
            self.metrics.rejected.labels("origin").inc()
            return _json_response(HTTPStatus.FORBIDDEN, {
                "error": "forbidden_origin",
                "message": f"origin {origin} is not in the server's --allowed-origins"})
        if self.config.api_keys and not self._authorized(request, query):
            log.info("refused %s: missing or wrong API key", path)
            self.metrics.rejected.labels("unauthorized").inc()
            return _json_response(HTTPStatus.UNAUTHORIZED, {
                "error": "unauthorized",
                "message": "a valid API key is required: send 'Authorization: Bearer KEY' "
                           "(or 'Token KEY'), or ?token=KEY"})
        if path == DEEPGRAM_PATH:
            try:
                self._dialect(request.path)
            except ParameterError as exc:
                self.metrics.rejected.labels("bad_parameter").inc()
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
                self.metrics.rejected.labels("overloaded").inc()
                texts, code, reason = dialect.farewell(refusal.close_code or CLOSE_INTERNAL,
                                                       refusal, 0.0)
                slog.info("refused: %s", refusal)
                for text in texts:
                    await ws.send(text)
                await ws.close(code, reason)
                return
        except RtasrError as exc:
            slog.info("refused: %s", exc)
            self.metrics.rejected.labels(exc.code).inc()
            await ws.send(Error(code=exc.code, message=str(exc)).to_json())
            await ws.close(exc.close_code or CLOSE_INTERNAL, exc.code)
            return
        params = dialect.params
        config = self.config.replace(beam_size=self.engine.beam_size,
                                     context_chars=self.engine.context_chars,
                                     **dialect.config_changes(self.config.pause_ms))
        session = Session(config, params, session_id, params.language)
        conn = Connection(ws, session, self.engine, self.config, dialect, self.metrics)
        self._connections.add(conn)
        self._idle.clear()
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
            if not self._connections:
                self._idle.set()
