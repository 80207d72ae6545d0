"""rtasr on Ray Serve, for more than one machine: `pip install 'rtasr[ray]'`.

Two deployments:

- `Asr` holds the model (`num_gpus` per replica is configurable) and decodes requests from
  every ingress replica in batches (`@serve.batch`): a batch's finals go before its partials,
  and requests that can share a model call are decoded together.
- `Ingress` accepts the native websocket protocol (and Deepgram's `/v1/listen`) through a
  FastAPI websocket route and runs the same session core as `rtasr serve`: `Session` for the
  speech logic, `Connection` for the limits and the delivery of finals. Only the transport
  (Starlette's websocket) and the engine (a handle to `Asr`) differ.

`serve run deploy/serve.yaml` or `serve deploy deploy/serve.yaml`; see docs/ray.md.
"""

# No `from __future__ import annotations` here: FastAPI reads the websocket handlers'
# annotations at run time, and Ray Serve's class ingress hides this module's globals from it.
import asyncio
import contextlib
import logging
import uuid
from typing import Any, cast

from fastapi import FastAPI, WebSocket
from ray import serve
from ray.serve.handle import DeploymentHandle
from websockets.exceptions import ConnectionClosed

from .config import Config
from .connection import Connection, SessionLog
from .decoding import Request, Transcript
from .deepgram import DEEPGRAM_PATH, DeepgramDialect
from .engine import Engine
from .errors import CLOSE_INTERNAL, ParameterError, RtasrError
from .metrics import Metrics
from .protocol import Dialect, Error, Hello
from .session import Session

log = logging.getLogger(__name__)
api = FastAPI(title="rtasr")


@serve.deployment(max_ongoing_requests=512)
class Asr:
    """The model, shared by every ingress replica."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.engine = Engine(Config(**options))
        self.engine.start()

    def info(self) -> dict[str, Any]:
        e = self.engine
        return {"model": e.spec.name, "device": e.device, "language": e.language,
                "multilingual": e.multilingual, "beam_size": e.beam_size,
                "context_chars": e.context_chars}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def transcribe(self, requests: list[Request]) -> list[Transcript]:
        return await asyncio.to_thread(self._decode, requests)

    def _decode(self, requests: list[Request]) -> list[Transcript]:
        """Finals first; requests that share a batch key in one model call."""
        results: dict[int, Transcript] = {}
        order = sorted(range(len(requests)), key=lambda i: requests[i].priority)
        groups: dict[object, list[int]] = {}
        for i in order:
            groups.setdefault(self.engine.batch_key(requests[i]), []).append(i)
        for members in groups.values():
            for i, result in zip(members, self.engine.decode_batch([requests[i] for i in members]),
                                 strict=True):
                results[i] = result
        return [results[i] for i in range(len(requests))]


class _Socket:
    """Starlette's websocket with the four calls `Connection` makes of a websockets one."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def recv(self) -> str | bytes:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise ConnectionClosed(None, None)
        data = message.get("bytes")
        return data if data is not None else cast(str, message.get("text", ""))

    async def send(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except Exception:
            raise ConnectionClosed(None, None) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)


class _RemoteEngine:
    """What `Connection` needs of an engine, answered by the `Asr` deployment."""

    partial_backoff = 1.0

    def __init__(self, asr: DeploymentHandle[Any]) -> None:
        self.asr = asr

    async def transcribe(self, request: Request) -> Transcript | None:
        return cast(Transcript, await self.asr.transcribe.remote(request))


@serve.deployment(max_ongoing_requests=1000)
@serve.ingress(api)
class Ingress:
    def __init__(self, asr: DeploymentHandle[Any], options: dict[str, Any]) -> None:
        self.asr = asr
        self.config = Config(**options)
        self.engine = _RemoteEngine(asr)
        self.metrics = Metrics()
        self.info: dict[str, Any] | None = None
        self.sessions = 0

    async def _info(self) -> dict[str, Any]:
        if self.info is None:
            self.info = cast(dict[str, Any], await self.asr.info.remote())
        return self.info

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "ready": True, **await self._info(), "sessions": self.sessions}

    @api.websocket("/ws")
    async def native(self, ws: WebSocket) -> None:
        await self._session(ws, Dialect)

    @api.websocket(DEEPGRAM_PATH)
    async def deepgram(self, ws: WebSocket) -> None:
        await self._session(ws, DeepgramDialect)

    async def _session(self, ws: WebSocket, kind: type[Dialect]) -> None:
        info = await self._info()
        await ws.accept()
        socket = _Socket(ws)
        session_id = uuid.uuid4().hex[:12]
        try:
            dialect = kind(ws.url.query, default_language=info["language"])
            language = dialect.params.language
            if not info["multilingual"] and language not in (None, "en"):
                raise ParameterError(f"model {info['model']} is English-only")
        except RtasrError as exc:
            await socket.send(Error(code=exc.code, message=str(exc)).to_json())
            await socket.close(exc.close_code or CLOSE_INTERNAL, exc.code)
            return
        config = self.config.replace(beam_size=info["beam_size"],
                                     context_chars=info["context_chars"],
                                     **dialect.config_changes(self.config.pause_ms))
        session = Session(config, dialect.params, session_id, language)
        conn = Connection(cast(Any, socket), session, cast(Engine, self.engine), self.config,
                          dialect, self.metrics)
        SessionLog(log, {"session": session_id}).info("open on Ray (%s)", dialect.name)
        self.sessions += 1
        try:
            for text in dialect.greeting(Hello(session_id, info["model"], dialect.params)):
                await socket.send(text)
            await conn.run()
        except ConnectionClosed:
            pass
        finally:
            self.sessions -= 1


def build(args: dict[str, Any]) -> Any:
    """The application for `serve run`/`serve deploy` (deploy/serve.yaml's `args`).

    args: `model`, `device`, `compute_type`, `language` (as `rtasr serve`), `num_gpus` per
    model replica (default 1 with device cuda, else 0), `asr_replicas` (1),
    `ingress_replicas` (2).
    """
    options = {k: args[k] for k in ("model", "device", "compute_type", "language") if k in args}
    device = options.get("device", "auto")
    num_gpus = float(args.get("num_gpus", 1 if device == "cuda" else 0))
    asr = cast(Any, Asr).options(num_replicas=int(args.get("asr_replicas", 1)),
                      ray_actor_options={"num_gpus": num_gpus, "num_cpus": 1}).bind(options)
    ingress = cast(Any, Ingress).options(num_replicas=int(args.get("ingress_replicas", 2)),
                              ray_actor_options={"num_cpus": 0.5})
    return ingress.bind(asr, options)
