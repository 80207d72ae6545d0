"""rtasr on Ray Serve, for more than one machine: `pip install 'rtasr[ray]'`.

Two deployments:

- `Asr` holds the model (`num_gpus` per replica is configurable) and decodes the requests of
  every ingress replica through its engine's scheduler, as `rtasr serve` does (scheduler.py:
  finals first, batches, stale partials dropped); its load figures go back to the ingresses.
- `Ingress` accepts every websocket dialect `rtasr serve` does (native, Deepgram's
  `/v1/listen`, OpenAI's `/v1/realtime`) through a FastAPI websocket route and runs the same
  session core as `rtasr serve`: `Session` for the speech logic, `Connection` for the limits
  and the delivery of finals. Only the transport
  (Starlette's websocket) and the engine (a handle to `Asr`) differ. Each ingress replica
  admits as `rtasr serve` does (gateway.py's `admission_error`): at its `max_sessions`, or
  while the model replica's real-time finals wait over `max_final_wait_ms`, a new session
  gets `overloaded` (1013) and `/healthz` answers 503.
- With `diarize: true`, each `Asr` replica also loads the speaker-embedding model (CAM++, the
  `diarize` extra) and embeds the finals of every ingress's `diarize=true` sessions on its
  own thread (engine/speakers.py), as `rtasr serve --diarize` does; the speaker tracking
  stays in each session, on its ingress.

`serve run deploy/serve.yaml` or `serve deploy deploy/serve.yaml`; see docs/ray.md.
"""

# No `from __future__ import annotations` here: FastAPI reads the websocket handlers'
# annotations at run time, and Ray Serve's class ingress hides this module's globals from it.
import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from typing import Any, cast

import numpy as np
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from websockets.exceptions import ConnectionClosed

from .config import Config
from .core import limits
from .core.engine_api import DecodeRequest, ModelInfo, Transcript
from .core.protocol import Refusal
from .engine.engine import Engine
from .errors import CLOSE_POLICY, OverloadedError
from .server.gateway import DIALECTS, Gateway, admission_error
from .server.metrics import Metrics

log = logging.getLogger(__name__)
api = FastAPI(title="rtasr")
LOAD_EVERY_S = 0.5  # how often an ingress asks the model replica for its load figures


@serve.deployment(max_ongoing_requests=512)
class Asr:
    """The model, shared by every ingress replica."""

    def __init__(self, options: dict[str, Any]) -> None:
        config = Config(**options)
        self.engine = Engine(config)
        self.engine.start()
        self.speakers: Any = None  # engine/speakers.py's SpeakerEmbedder, with diarize
        if config.diarize:  # torch is imported only now
            from .engine.speakers import SpeakerEmbedder

            self.speakers = SpeakerEmbedder(busy=self.engine.scheduler.side_work)
            self.speakers.warm_up()

    def setup(self) -> tuple[ModelInfo, Config]:
        """What an ingress serves with: the model, and the engine's effective config, resolved
        on this replica's machine (its GPU, its cores), not the ingress's."""
        return self.engine.info, self.engine.config

    async def transcribe(self, request: DecodeRequest) -> Transcript | None:
        """Through this replica's own scheduler (scheduler.py), as `rtasr serve` decodes: finals
        before partials across every ingress's requests, batches by the batch plan, stale
        partials dropped (None), the spare beam for a lone final."""
        return await self.engine.transcribe(request)

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        """The speaker embedding of one final's speech (with `diarize`)."""
        if self.speakers is None:
            raise RuntimeError("this deployment runs without diarize")
        return cast(np.ndarray, await self.speakers.embed(audio))

    def load(self) -> dict[str, Any]:
        """The replica's load figures, for the ingresses (their sessions' partial cadence and
        shedding, /healthz)."""
        return {**self.engine.stats(), "partial_backoff": self.engine.partial_backoff,
                "behind": self.engine.behind}


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
    """What `Connection` needs of an engine, answered by the `Asr` deployment. The load
    figures sessions read on every audio frame are the model replica's, asked for at most
    every LOAD_EVERY_S in the background (with more than one replica: whichever Ray asks)."""

    def __init__(self, asr: DeploymentHandle[Any]) -> None:
        self.asr = asr
        self.load: dict[str, Any] = {"partial_backoff": 1.0, "behind": False}
        self._asked = -LOAD_EVERY_S
        self._asking: asyncio.Task[None] | None = None

    @property
    def partial_backoff(self) -> float:
        self._refresh()
        return float(self.load["partial_backoff"])

    @property
    def behind(self) -> bool:
        self._refresh()
        return bool(self.load["behind"])

    @property
    def final_wait_s(self) -> float:
        """The model replica's recent final wait (its admission signal)."""
        self._refresh()
        return float(self.load.get("final_wait_s", 0.0))

    async def transcribe(self, request: DecodeRequest) -> Transcript | None:
        return cast(Transcript | None, await self.asr.transcribe.remote(request))

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, await self.asr.embed.remote(audio))

    async def fresh_load(self) -> dict[str, Any]:
        self.load = dict(await self.asr.load.remote())
        return self.load

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._asked < LOAD_EVERY_S or (self._asking and not self._asking.done()):
            return
        self._asked = now
        self._asking = asyncio.get_running_loop().create_task(self._ask())

    async def _ask(self) -> None:
        try:
            await self.fresh_load()
        except Exception as exc:  # a replica restarting: keep the last figures
            log.warning("could not read the model replica's load: %s", exc)


async def _refuse(ws: WebSocket, refusal: Refusal) -> None:
    """Answer the handshake with the refusal's HTTP status where the ASGI server can
    (the websocket denial-response extension); else close before accepting, which the
    proxy answers with HTTP 403."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse(refusal.body, refusal.status,
                                                   headers=dict(refusal.headers)))
    else:
        await ws.close(CLOSE_POLICY)


@serve.deployment(max_ongoing_requests=1000)
@serve.ingress(api)
class Ingress:
    def __init__(self, asr: DeploymentHandle[Any], options: dict[str, Any]) -> None:
        self.asr = asr
        options["api_keys"] = limits.api_keys(options.pop("api_keys", ()),
                                              os.environ.get("RTASR_API_KEYS", ""))
        options["allowed_origins"] = tuple(options.get("allowed_origins", ()))
        self.options = Config(**options)  # resolved with the model's fields in _gateway
        self.engine = _RemoteEngine(asr)
        self.metrics = Metrics()
        self.gateway: Gateway | None = None
        self.served = 0

    async def _gateway(self) -> Gateway:
        if self.gateway is None:
            model, engine = cast(tuple[ModelInfo, Config], await self.asr.setup.remote())
            config = self.options.served_with(engine)
            self.gateway = Gateway(config, self.engine, model, self.metrics,
                                   self.admission_error)
            if config.diarize:  # the model replicas embed
                self.gateway.embed = self.engine.embed
        return self.gateway

    def admission_error(self) -> OverloadedError | None:
        """Why this replica would refuse a new session now, or None (as `rtasr serve`)."""
        gateway = self.gateway
        assert gateway is not None
        return admission_error(len(gateway.connections), gateway.config.max_sessions,
                               self.engine.final_wait_s, gateway.config.max_final_wait_ms)

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """200 while this replica admits new sessions, 503 while it would refuse them."""
        gateway = await self._gateway()
        config = gateway.config
        engine = await self.engine.fresh_load()
        full = self.admission_error()
        return JSONResponse({
            "status": "full" if full else "ok", "ready": full is None, "device": config.device,
            **dataclasses.asdict(gateway.model), "beam_size": config.beam_size,
            "context_chars": config.context_chars, "sessions": len(gateway.connections),
            "max_sessions": config.max_sessions, "sessions_served": self.served,
            "diarize": gateway.embed is not None,
            "replica": serve.get_replica_context().replica_tag, "engine": engine},
            503 if full else 200)

    @api.websocket("/{path:path}")
    async def websocket(self, ws: WebSocket, path: str) -> None:
        gateway = await self._gateway()
        route, query = f"/{path}", ws.url.query
        if route not in DIALECTS:
            await ws.close(CLOSE_POLICY)  # before accept: the proxy answers HTTP 403
            return
        refusal = gateway.refusal(route, query, ws.headers)
        if refusal is not None:
            await _refuse(ws, refusal)
            return
        await ws.accept()
        self.served += 1
        await gateway.run(_Socket(ws), route, query)


def build(args: dict[str, Any]) -> Any:
    """The application for `serve run`/`serve deploy` (deploy/serve.yaml's `args`).

    args: `model`, `device`, `compute_type`, `language` (as `rtasr serve`), `num_gpus` per
    model replica (default 1 with device cuda, else 0), `asr_replicas` (1),
    `ingress_replicas` (2), `max_sessions` (per ingress replica; default: the model's, as
    `rtasr serve`) and `max_final_wait_ms` (1000), `api_keys` and `allowed_origins` (lists,
    as `rtasr serve`'s `--api-key` and `--allowed-origins`; the ingress replicas also read
    `RTASR_API_KEYS`), `diarize` (false; true: speaker labels, `rtasr serve --diarize`, with
    the `diarize` extra on every node running a model replica).
    """
    options: dict[str, Any] = {k: args[k] for k in ("model", "device", "compute_type",
                                                    "language", "max_sessions",
                                                    "max_final_wait_ms", "diarize")
                               if k in args}
    access: dict[str, Any] = {k: list(args[k]) for k in ("api_keys", "allowed_origins")
                              if k in args}
    device = options.get("device", "auto")
    num_gpus = float(args.get("num_gpus", 1 if device == "cuda" else 0))
    asr = cast(Any, Asr).options(num_replicas=int(args.get("asr_replicas", 1)),
                      ray_actor_options={"num_gpus": num_gpus, "num_cpus": 1}).bind(options)
    ingress = cast(Any, Ingress).options(num_replicas=int(args.get("ingress_replicas", 2)),
                              ray_actor_options={"num_cpus": 0.5})
    return ingress.bind(asr, {**options, **access})
