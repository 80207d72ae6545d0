"""Opening a session, the same for every transport (app.py's websockets, ray_app.py's
Starlette): which dialect a path speaks, who may connect (origins, API keys), whether a new
session is admitted, and the `Session` + `Connection` built for it.

A transport asks `Gateway.refusal()` before the websocket handshake (an HTTP answer, or None
to go on), then hands the accepted socket to `Gateway.run()`, which refuses what can only be
refused after the handshake (bad parameters in the native protocol, `overloaded`), runs the
session to its end and keeps the set of open connections. A dialect is registered by path
with `register()`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from urllib.parse import parse_qs

from websockets.exceptions import ConnectionClosed

from ..config import Config
from ..core.engine_api import ModelInfo
from ..core.protocol import Dialect, Error, Hello, Reconfigure, Refusal, StreamParams
from ..core.session import Session
from ..dialects.deepgram import DEEPGRAM_PATH, DeepgramDialect
from ..dialects.openai_realtime import REALTIME_PATH, OpenAIRealtimeDialect
from ..errors import CLOSE_INTERNAL, OverloadedError, ParameterError, RtasrError
from .connection import Connection
from .interfaces import Embed, EngineLike, SessionLog, Socket
from .metrics import Metrics

log = logging.getLogger(__name__)

DIALECTS: dict[str, type[Dialect]] = {}
"""Websocket paths and the dialect each speaks; `register()` adds one."""


def register(path: str, dialect: type[Dialect]) -> None:
    """Serve `dialect` on websocket `path` (on `rtasr serve` and on the Ray ingress)."""
    DIALECTS[path] = dialect


register("/", Dialect)
register("/ws", Dialect)
register(DEEPGRAM_PATH, DeepgramDialect)
register(REALTIME_PATH, OpenAIRealtimeDialect)


def authorized(keys: tuple[str, ...], headers: Mapping[str, str], query: str) -> bool:
    """Whether the request carries one of `keys` (`Authorization: Bearer|Token KEY` or
    `?token=KEY`), compared in constant time. True when no keys are configured."""
    if not keys:
        return True
    scheme, _, credential = headers.get("Authorization", "").partition(" ")
    offered = parse_qs(query).get("token", [])
    if scheme.lower() in ("bearer", "token") and credential.strip():
        offered.append(credential.strip())
    return any(hmac.compare_digest(o.encode(), k.encode()) for o in offered for k in keys)


NO_KEY = ("a valid API key is required: send 'Authorization: Bearer KEY' (or 'Token KEY'), or "
          "?token=KEY")
UNAUTHORIZED = Dialect.unauthorized(NO_KEY)


class Gateway:
    """Session set-up and the open connections of one transport (one server, one Ray
    ingress replica)."""

    def __init__(self, config: Config, engine: EngineLike, model: ModelInfo, metrics: Metrics,
                 admission: Callable[[], OverloadedError | None] | None = None) -> None:
        self.config = config  # resolved: Config.served_with(the engine's)
        self.engine = engine
        self.model = model
        self.metrics = metrics
        self.admission = admission or (lambda: None)
        self.connections: set[Connection] = set()
        self.idle = asyncio.Event()  # set while no session is open
        self.idle.set()
        self.embed: Embed | None = None  # speaker embeddings: set by a server with --diarize

    def dialect(self, path: str, query: str, kind: type[Dialect] | None = None) -> Dialect:
        """The wire protocol the client asked for (`kind`, else the path's). Raises
        ParameterError for bad parameters."""
        dialect = (kind or DIALECTS[path])(query, default_language=self.model.language)
        self.model.check(dialect.params.language, dialect.params.task)
        if dialect.params.diarize and self.embed is None:
            raise ParameterError("diarize=true needs a server started with --diarize")
        return dialect

    def refusal(self, path: str, query: str, headers: Mapping[str, str]) -> Refusal | None:
        """Refuse a websocket before the handshake: a foreign origin (403), a missing or
        wrong API key (401), or bad parameters where the dialect answers them in HTTP."""
        origin = headers.get("Origin")
        allowed = self.config.allowed_origins
        if origin is not None and allowed and origin not in allowed and "*" not in allowed:
            log.info("refused %s: origin %s is not allowed", path, origin)
            self.metrics.rejected.labels("origin").inc()
            return Refusal(HTTPStatus.FORBIDDEN, {
                "error": "forbidden_origin",
                "message": f"origin {origin} is not in the server's --allowed-origins"})
        if not authorized(self.config.api_keys, headers, query):
            log.info("refused %s: missing or wrong API key", path)
            self.metrics.rejected.labels("unauthorized").inc()
            return DIALECTS[path].unauthorized(NO_KEY)  # in the dialect's error shape
        try:
            self.dialect(path, query)
        except ParameterError as exc:
            refusal = DIALECTS[path].handshake_refusal(exc)
            if refusal is not None:
                self.metrics.rejected.labels(exc.code).inc()
            return refusal
        return None

    def shutdown(self, finals_by: float | None = None) -> None:
        """Finalize and close every open session (1001), waiting for the model at most
        until `finals_by` (loop time)."""
        for conn in list(self.connections):
            conn.shutdown(finals_by=finals_by)

    async def run(self, ws: Socket, path: str, query: str,
                  kind: type[Dialect] | None = None) -> None:
        """Run one session on an accepted websocket (or a transport's `Socket`), from its
        greeting to its close. `kind`: the dialect, for a transport without paths."""
        session_id = uuid.uuid4().hex[:12]
        slog = SessionLog(log, {"session": session_id})
        try:
            dialect = self.dialect(path, query, kind)
            refusal = self.admission()
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
        conn = self._connection(ws, dialect, session_id)
        self.connections.add(conn)
        self.idle.clear()
        params = dialect.params
        slog.info("open (%s): %d Hz %s, language %s", dialect.name, params.sample_rate,
                  params.encoding, params.language or "auto")
        try:
            for text in dialect.greeting(Hello(session_id, self.model.name, params)):
                await ws.send(text)
            await conn.run()
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(conn)
            if not self.connections:
                self.idle.set()

    def _connection(self, ws: Socket, dialect: Dialect, session_id: str) -> Connection:
        def settings(change: Reconfigure) -> tuple[Config, StreamParams]:
            self.model.check(change.params.language, change.params.task)
            changes = dict(change.changes)
            if "endpoint_silence_ms" in changes:
                changes["pause_ms"] = min(self.config.pause_ms, changes["endpoint_silence_ms"])
            return self._config(changes), change.params

        config = self._config(dialect.config_changes(self.config.pause_ms))
        session = Session(config, dialect.params, session_id, dialect.params.language)
        return Connection(ws, session, self.engine, self.config, dialect, self.metrics, settings,
                          embed=self.embed)

    def _config(self, changes: Mapping[str, int]) -> Config:
        """The server's config for one session: what the client's dialect changed."""
        return self.config.replace(**changes)


def admission_error(sessions: int, max_sessions: int, final_wait_s: float,
                    max_final_wait_ms: int) -> OverloadedError | None:
    """Why a new session would be refused now (`overloaded`, 1013), or None: `sessions`
    open at --max-sessions, or real-time finals that waited over --max-final-wait-ms for the
    model in the last few seconds (`final_wait_s`, scheduler.py). `rtasr serve` and each
    Ray ingress replica admit by this."""
    if sessions >= max_sessions:
        return OverloadedError(f"the server is at its limit of {max_sessions} sessions; "
                               "try again later")
    if final_wait_s > max_final_wait_ms / 1000:
        return OverloadedError("the server is behind on finals; try again later")
    return None


def refusal_body(refusal: Refusal) -> tuple[bytes, list[tuple[str, str]]]:
    """A refusal's JSON body and its headers (Content-Type, Content-Length, the dialect's)."""
    data = json.dumps(refusal.body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
               *refusal.headers]
    return data, headers


__all__ = ["DIALECTS", "Gateway", "ModelInfo", "Refusal", "admission_error", "authorized",
           "refusal_body", "register"]
