"""What the server's modules share without websockets: the socket a connection talks to
(websockets' or the Ray ingress's), the engine it decodes with (the local `Engine` or Ray's
handle) and the log adapter that names the session in every record."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import numpy as np

from ..core.engine_api import DecodeRequest, Transcript


class Socket(Protocol):
    """The websocket calls a connection makes (websockets' `ServerConnection`, or the Ray
    ingress's wrapper of Starlette's); each raises `ConnectionClosed` once the peer is gone."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str, /) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class EngineLike(Protocol):
    """What a connection needs of an engine (the local `Engine`, or Ray's `Asr` handle)."""

    @property
    def partial_backoff(self) -> float: ...

    @property
    def behind(self) -> bool: ...

    async def transcribe(self, request: DecodeRequest) -> Transcript | None: ...


Embed = Callable[[np.ndarray], Awaitable[np.ndarray]]
"""A speaker embedding of 16 kHz float audio (`SpeakerEmbedder.embed`, with --diarize)."""


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    """Adds the session id to every record (`%(session)s`, and the JSON log's field)."""

    def process(self, msg: str, kwargs: MutableMapping[str, Any]) -> tuple[str, Any]:
        kwargs["extra"] = {**kwargs.get("extra", {}), "session": self.extra["session"]}  # type: ignore[index]
        return msg, kwargs
