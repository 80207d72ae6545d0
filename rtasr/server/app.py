"""The websocket transport: accept connections, move bytes between sockets and sessions.

All speech logic lives in session.py and all inference in engine.py; this module owns the
asyncio side: the listening socket (each client's socket handed to gateway.py, which opens
its session and `Connection`), HTTP answers on the same port, and the server's lifecycle
(start: load and warm the model, then listen; stop: finalize every open session, then close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request as HandshakeRequest
from websockets.http11 import Response

from ..config import Config
from ..core.protocol import Refusal
from ..dialects.deepgram import DEEPGRAM_PATH
from ..engine.engine import Engine
from ..errors import ConfigError, OverloadedError
from . import static
from .gateway import DIALECTS, UNAUTHORIZED, Gateway, admission_error, authorized, refusal_body
from .http_post import PostRequest, Posts, Reply, front
from .loop_monitor import LoopMonitor
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .rest.deepgram_prerecorded import DeepgramRest
from .rest.openai_audio import OpenAIRest, models_body
from .rest.uploads import FileTranscriber
from .wyoming_tcp import WyomingServer

if TYPE_CHECKING:
    from ..engine.speakers import SpeakerEmbedder

log = logging.getLogger(__name__)

# Incoming memory per connection: the websocket layer queues INCOMING_FRAMES + 1 frames
# before it stops reading the socket, and holds one more frame being received (plus one read
# of at most 256 KiB), each at most OVERSIZE_FACTOR x --max-frame-bytes: about 12 MiB at the
# 1 MiB default (docs/operations.md). Frames between 1x and OVERSIZE_FACTOR x the limit still
# reach the connection, which answers them with `frame_too_large`.
INCOMING_FRAMES = 4
OVERSIZE_FACTOR = 2
SEND_SHARE = 0.25  # of --shutdown-grace-s, kept for sending the last finals and closing
# websockets logs request lines at DEBUG, and a request line may carry ?token=KEY.
logging.getLogger("websockets").setLevel(logging.INFO)


def _load_speakers(engine: Engine) -> SpeakerEmbedder:
    """The speaker-embedding model (--diarize), loaded and warmed: only now is torch imported.
    Raises ConfigError without the diarize extra. The engine starts no partial while an
    embedding is asked for (Scheduler.side_work)."""
    from ..engine.speakers import SpeakerEmbedder

    embedder = SpeakerEmbedder(busy=engine.scheduler.side_work)
    embedder.warm_up()
    log.info("speaker labels on (--diarize): CAM++ loaded")
    return embedder


def _json_response(status: HTTPStatus, body: dict[str, Any]) -> Response:
    return _answer(Refusal(status, body))


def _answer(refusal: Refusal) -> Response:
    data, headers = refusal_body(refusal)
    return Response(refusal.status, HTTPStatus(refusal.status).phrase, Headers(headers), data)


def _text_response(status: HTTPStatus, text: str) -> Response:
    data = (text + "\n").encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"),
                       ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


class Server:
    """The rtasr server: `await start()`, serve, `await stop()`; or `async with`."""

    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.engine = engine or Engine(config)
        # the one effective config: the model's fields as the engine resolved them
        self.config = config = config.served_with(self.engine.config)
        self._owns_engine = engine is None
        self._ws: WsServer | None = None
        self._sockets: set[ServerConnection] = set()  # every handler's, closing ones too
        self.loop_monitor = LoopMonitor()
        self.max_sessions = config.max_sessions
        self.metrics = Metrics()
        self.gateway = Gateway(config, self.engine, self.engine.info, self.metrics,
                               self.admission_error)
        # POST /v1/audio/* and /v1/listen, built on the running loop
        self.files: FileTranscriber | None = None
        self.rest: OpenAIRest | None = None
        self.deepgram_rest: DeepgramRest | None = None
        self.posts = Posts()  # uploads being transcribed
        # --wyoming-port: Home Assistant's protocol, sessions through the same gateway
        self.wyoming = WyomingServer(self.gateway, config) if config.wyoming_port is not None \
            else None
        self.speakers: SpeakerEmbedder | None = None  # with --diarize, loaded by start()

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
            self.gateway.model = self.engine.info  # what __init__ saw was the unloaded model
        if self.config.diarize and self.speakers is None:
            self.speakers = await asyncio.to_thread(_load_speakers, self.engine)
            self.gateway.embed = self.speakers.embed
        embed = None if self.speakers is None else self.speakers.embed
        files = self.files = FileTranscriber(self.config, self.engine, self.engine.info, embed)
        self.rest = OpenAIRest(files, self.config.api_keys)
        self.deepgram_rest = DeepgramRest(files, self.config.api_keys)
        self._ws = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            create_connection=front(self._post, self.posts),
            process_request=self._http,
            ssl=tls,
            max_size=self.config.max_frame_bytes * OVERSIZE_FACTOR,
            max_queue=INCOMING_FRAMES,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=self.config.ping_interval_s,
            compression=None,
            server_header="rtasr",
        )
        if self.wyoming is not None:
            try:
                await self.wyoming.start()
            except Exception:
                self._ws.close()
                raise
        self.metrics.watch(self.engine, lambda: self.session_count)
        self.loop_monitor.start()
        scheme = "wss" if tls else "ws"
        log.info("listening on %s://%s:%d/ws%s", scheme, self.config.host, self.port,
                 f" ({len(self.config.api_keys)} API keys)" if self.config.api_keys else "")

    async def stop(self) -> None:
        """Stop accepting, finalize and deliver every open session (within
        --shutdown-grace-s), then close them; uploads being transcribed get until the same
        point to finish, then are cancelled (503)."""
        if self._ws is None:
            return
        grace = self.config.shutdown_grace_s
        deadline = asyncio.get_running_loop().time() + grace
        self._ws.close(close_connections=False)
        if self.wyoming is not None:
            self.wyoming.close()
        # finals first: the model gets all but the last SEND_SHARE of the grace
        finals_by = deadline - grace * SEND_SHARE
        self.gateway.shutdown(finals_by=finals_by)
        uploads = asyncio.create_task(self.posts.stop(finals_by))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self.gateway.idle.wait()
        await uploads
        if self.wyoming is not None:
            await self.wyoming.wait_closed(max(0.0, deadline - asyncio.get_running_loop().time()))
        for ws in list(self._sockets):  # clients that did not read or answer the close
            ws.transport.abort()
        await self._ws.wait_closed()
        self._ws = None
        self.metrics.unwatch(self.engine)
        await self.loop_monitor.stop()
        if self._owns_engine:  # a decode still running gets what is left of the grace
            left_s = deadline - asyncio.get_running_loop().time()
            await asyncio.to_thread(self.engine.stop, max(0.0, left_s))
        if self.speakers is not None:
            await asyncio.to_thread(self.speakers.stop)
            self.speakers = None

    @property
    def session_count(self) -> int:
        return len(self.gateway.connections)

    def admission_error(self) -> OverloadedError | None:
        """Why a new session would be refused now, or None when it is welcome."""
        return admission_error(len(self.gateway.connections), self.max_sessions,
                               self.engine.scheduler.recent_final_wait_s(),
                               self.config.max_final_wait_ms)

    def health(self) -> dict[str, Any]:
        full = self.admission_error()
        return {
            "status": "full" if full else "ok",
            "ready": full is None,
            "model": self.engine.spec.name,
            "device": self.engine.device,
            "multilingual": self.engine.multilingual,
            "languages": self.engine.languages,
            "diarize": self.gateway.embed is not None,  # sessions may ask for diarize=true
            "sessions": len(self.gateway.connections),
            "max_sessions": self.max_sessions,
            "engine": self.engine.stats(),
            "loop_lag_p99_ms": self.loop_monitor.lag_ms(99),
        }

    def _http(self, connection: ServerConnection, request: HandshakeRequest) -> Response | None:
        path, _, query = request.path.partition("?")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and path in DIALECTS:
            refusal = self.gateway.refusal(path, query, request.headers)
            return None if refusal is None else _answer(refusal)
        if path == "/metrics":
            if not authorized(self.config.api_keys, request.headers, query):
                self.metrics.rejected.labels("unauthorized").inc()
                return _answer(UNAUTHORIZED)
            body = self.metrics.render()
            headers = Headers([("Content-Type", CONTENT_TYPE_LATEST),
                               ("Content-Length", str(len(body)))])
            return Response(HTTPStatus.OK.value, "OK", headers, body)
        if path == "/v1/models":
            if not authorized(self.config.api_keys, request.headers, query):
                return _answer(UNAUTHORIZED)
            return _json_response(HTTPStatus.OK, models_body(self.engine.info))
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

    async def _post(self, request: PostRequest, reply: Reply) -> None:
        """A POST: Deepgram's prerecorded /v1/listen, or OpenAI's (which answers 404 for any
        other path)."""
        assert self.rest is not None and self.deepgram_rest is not None
        if request.path == DEEPGRAM_PATH:
            await self.deepgram_rest.handle(request, reply)
        else:
            await self.rest.handle(request, reply)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path, _, query = ws.request.path.partition("?")
        self._sockets.add(ws)
        try:
            await self.gateway.run(ws, path, query)
        finally:
            self._sockets.discard(ws)
