"""Plain HTTP requests with a body (POST) on the websocket port.

websockets' server answers GET requests only (the handshake and `process_request`), and
refuses a request with a body. `front()` gives it a connection class that looks at the first
bytes of each connection: a POST is read here, with a bounded buffer (the socket stops being
read while the handler is behind), and answered by a `PostHandler`; anything else goes on to
websockets unchanged.

A client that hangs up (closes its side of the connection, or resets it) before its answer
is written takes its request with it: the handler's task is cancelled, with its decodes.
Every handler's task is in `Posts.tasks` until done, so a stopping server can wait for them
and then cancel the rest (`Posts.stop`), whose clients get a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection

from ..dialects import deepgram, openai_realtime

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # request line and headers
READ_LIMIT = 256 * 1024  # body bytes buffered before the socket stops being read
READ_TIMEOUT_S = 30.0  # a client that stops sending its request is dropped


@dataclass(frozen=True)
class PostRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased
    reader: asyncio.StreamReader  # the body, Content-Length bytes

    @property
    def length(self) -> int:
        """Content-Length: decimal digits only (no sign, no exponent); else ValueError."""
        text = self.headers.get("content-length", "0").strip() or "0"
        if not (text.isascii() and text.isdecimal() and len(text) <= 20):
            raise ValueError(f"bad Content-Length {text[:20]!r}")
        return int(text)


class Reply:
    """Writes one HTTP/1.1 response: whole (`send`) or as server-sent events (`events`)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.started = False

    def send(self, status: int, body: bytes, content_type: str,
             headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._head(status, content_type, (("Content-Length", str(len(body))), *headers))
        self.transport.write(body)

    def json(self, status: int, data: Any) -> None:
        self.send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    def start_events(self) -> None:
        self._head(200, "text/event-stream", (("Cache-Control", "no-cache"),))

    def event(self, data: Any) -> None:
        self.transport.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())

    def _head(self, status: int, content_type: str, headers: tuple[tuple[str, str], ...]) -> None:
        self.started = True
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Server: rtasr",
                 f"Content-Type: {content_type}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers)]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())


PostHandler = Callable[[PostRequest, Reply], Awaitable[None]]
STOPPING = "server stopping"  # the cancel message of a request cut short by a shutdown


class Posts:
    """The POST requests being answered: their tasks, for a server's shutdown."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop(self, deadline: float) -> None:
        """Let the requests being answered finish until `deadline` (loop time), then cancel
        the rest (a 503 where nothing was sent yet) and wait for them to end."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=max(
                0.0, deadline - asyncio.get_running_loop().time()))
        for task in set(self.tasks):
            task.cancel(STOPPING)
        if self.tasks:
            await asyncio.wait(set(self.tasks))


def error_body(path: str, status: int, message: str, code: str) -> dict[str, Any]:
    """An error answered here, before a REST endpoint read the request, in the shape of the
    API its path belongs to (Deepgram's on /v1/listen, OpenAI's elsewhere)."""
    if path == deepgram.DEEPGRAM_PATH:
        return deepgram.rest_error_body(status, message)
    return openai_realtime.rest_error_body(status, message, code=code)


async def _serve(reader: asyncio.StreamReader, transport: asyncio.Transport,
                 handler: PostHandler) -> None:
    reply = Reply(transport)
    path = ""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        line, *fields = head.decode("latin-1").split("\r\n")
        method, target, _ = line.split(" ", 2)
        headers = {}
        for field in filter(None, fields):
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        path, _, query = target.partition("?")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            reply.json(411, error_body(path, 411, "send a Content-Length", "length_required"))
            return
        await handler(PostRequest(method, path, query, headers, reader), reply)
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError, TimeoutError):
        if not reply.started:
            reply.json(400, error_body(path, 400, "malformed or incomplete HTTP request",
                                       "bad_request"))
    except asyncio.CancelledError as cancelled:
        if cancelled.args == (STOPPING,) and not reply.started:
            reply.json(503, error_body(path, 503, "the server is stopping; retry elsewhere",
                                       "server_stopping"))
        raise
    except Exception:
        log.exception("request failed")
        if not reply.started:
            reply.json(500, error_body(path, 500, "internal error", "internal_error"))
    finally:
        with contextlib.suppress(Exception):
            transport.close()


def front(handler: PostHandler, posts: Posts) -> type[ServerConnection]:
    """A websockets connection class that hands POST requests to `handler`, each a task in
    `posts`."""

    class Front(ServerConnection):
        _mode = ""  # "", "ws" or "post"
        _head = b""
        _reader: asyncio.StreamReader
        _task: asyncio.Task[None]

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._transport = transport

        def data_received(self, data: bytes) -> None:
            if self._mode == "ws":
                super().data_received(data)
            elif self._mode == "post":
                self._reader.feed_data(data)
            else:
                self._head += data
                if len(self._head) >= 5:
                    self._choose()

        def _choose(self) -> None:
            head, self._head = self._head, b""
            transport = self._transport
            if head.startswith(b"POST "):
                self._mode = "post"
                self._reader = asyncio.StreamReader(limit=READ_LIMIT)
                self._reader.set_transport(transport)
                self._reader.feed_data(head)
                self._task = posts.start(
                    _serve(self._reader, transport, handler))  # type: ignore[arg-type]
            else:
                self._mode = "ws"
                super().connection_made(transport)
                super().data_received(head)

        def eof_received(self) -> bool | None:  # type: ignore[override]
            if self._mode == "ws":
                return super().eof_received()
            if self._mode != "post":
                return None
            self._hung_up()
            return None  # the transport closes

        def connection_lost(self, exc: Exception | None) -> None:
            if self._mode == "ws":
                super().connection_lost(exc)
            elif self._mode == "post":
                self._hung_up()

        def _hung_up(self) -> None:
            """The client closed or reset its side: nobody waits for the answer any more."""
            self._reader.feed_eof()
            self._task.cancel()

        def pause_writing(self) -> None:
            if self._mode == "ws":
                super().pause_writing()

        def resume_writing(self) -> None:
            if self._mode == "ws":
                super().resume_writing()

    return Front
