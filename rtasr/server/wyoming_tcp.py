"""The Wyoming transport (`rtasr serve --wyoming-port`): Home Assistant's speech-to-text
protocol over TCP, on the same engine, gateway, limits and metrics as the websocket sessions.

Each connection reads events with the server's limits (`EventStream`) and hands them to its
`WyomingLink` between commands; each command (`audio-start` … `audio-stop`) is one session
that the gateway admits and runs like a websocket's, over a `Command` socket on the same
stream. Bad framing or bad input between commands gets an `error` event and closes the
connection; so does a command that ended with an error. Wyoming has no authentication: the
port serves whoever reaches it (docs/wyoming.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
from typing import Any

from websockets.exceptions import ConnectionClosed
from wyoming.event import Event, async_write_event

from ..config import Config
from ..dialects.wyoming import (
    MAX_HEADER_BYTES,
    WyomingDialect,
    WyomingLink,
    command_frame,
    error_text,
    merge_data,
    parse_header,
)
from ..errors import CLOSE_NORMAL, ConfigError, FrameTooLargeError, RtasrError
from .gateway import Gateway

log = logging.getLogger(__name__)

WYOMING = "wyoming"  # the gateway's name for this transport (it has no paths)
LINGER_S = 2.0  # how long a closing connection's last input is read and dropped


class EventStream:
    """One connection's events: read with the server's limits, written in Wyoming's framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_payload_bytes: int) -> None:
        self.reader = reader
        self.writer = writer
        self.max_payload_bytes = max_payload_bytes

    async def read(self) -> tuple[str, dict[str, Any], bytes] | None:
        """The next event (type, data, payload); None once the client has closed. Raises
        ProtocolError or FrameTooLargeError for bad framing."""
        try:
            line = await self.reader.readuntil(b"\n")
            header = parse_header(line, self.max_payload_bytes)
            data = header.data
            if header.data_length:
                data = merge_data(header, await self.reader.readexactly(header.data_length))
            payload = b""
            if header.payload_length:
                payload = await self.reader.readexactly(header.payload_length)
        except asyncio.IncompleteReadError:
            return None  # closed, maybe inside an event
        except asyncio.LimitOverrunError:
            raise FrameTooLargeError(f"an event's header line is over {MAX_HEADER_BYTES} "
                                     "bytes") from None
        return header.type, data, payload

    async def write(self, text: str) -> None:
        """Write one server event: a dialect's {"type", "data"}, or the gateway's own refusal
        (the native `error` message: {"type", "code", "message"})."""
        message = json.loads(text)
        data = message.get("data")
        if data is None and message["type"] == "error":
            data = {"text": message.get("message", ""), "code": message.get("code")}
        await async_write_event(Event(type=message["type"], data=data or {}), self.writer)

    def close(self) -> None:
        self.writer.close()

    async def shut(self) -> None:
        """Close after the client has read what was sent: end our side, then discard what
        it still sends for up to LINGER_S (closing with unread input would reset the
        connection, and the client could lose the last events, an `error` among them)."""
        try:
            if not self.writer.is_closing() and self.writer.can_write_eof():
                self.writer.write_eof()
                async with asyncio.timeout(LINGER_S):
                    while await self.reader.read(1 << 16):
                        pass
        except (OSError, TimeoutError):
            pass
        finally:
            self.writer.close()


class Command:
    """One command's socket, for the gateway's `Connection`: the stream's next events as
    text frames, until the command's session closes it (with a websocket close code)."""

    def __init__(self, stream: EventStream, gateway: Gateway) -> None:
        self.stream = stream
        self.gateway = gateway
        self.close_code: int | None = None

    async def recv(self) -> str:
        try:
            event = await self.stream.read()
        except RtasrError as exc:  # the stream is lost: say why and close it
            await refuse(self.stream, exc, self.gateway)
            raise ConnectionClosed(None, None) from None
        if event is None:
            raise ConnectionClosed(None, None)
        return command_frame(*event)

    async def send(self, message: str, /) -> None:
        try:
            await self.stream.write(message)
        except (ConnectionError, RuntimeError):
            raise ConnectionClosed(None, None) from None

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        self.close_code = code


async def refuse(stream: EventStream, error: RtasrError, gateway: Gateway) -> None:
    """Bad input: an `error` event, counted (the connection then closes)."""
    log.info("wyoming connection refused: %s: %s", error.code, error)
    gateway.metrics.errors.labels(error.code).inc()
    with contextlib.suppress(ConnectionError, RuntimeError):
        await stream.write(error_text(error))


class WyomingServer:
    """The Wyoming listener and its connections: `await start()`, `close()`,
    `await wait_closed()`."""

    def __init__(self, gateway: Gateway, config: Config) -> None:
        self.gateway = gateway
        self.config = config
        self._server: asyncio.Server | None = None
        self._idle: dict[asyncio.Task[None], EventStream] = {}  # links between commands
        self._links: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        port = self.config.wyoming_port
        assert port is not None
        try:
            self._server = await asyncio.start_server(
                self._serve, self.config.host, port, limit=MAX_HEADER_BYTES)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"--wyoming-port {port} on {self.config.host} is already "
                                  "in use") from None
            raise
        log.info("listening on tcp://%s:%d (Wyoming speech to text)", self.config.host,
                 self.port)

    def close(self) -> None:
        """Stop accepting and close the connections between commands; commands in flight
        finish with the gateway's sessions (Server.stop)."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for stream in self._idle.values():
            stream.close()

    async def wait_closed(self, timeout_s: float) -> None:
        """Wait for every connection to end, at most `timeout_s`; then cut the rest off."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._links:
                    await asyncio.wait(set(self._links))
        for task in list(self._links):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        keep_alive(writer, self.config.ping_interval_s)
        stream = EventStream(reader, writer, self.config.max_frame_bytes)
        try:
            await self._link(stream, task)
        except (ConnectionError, ConnectionClosed):
            pass
        except Exception:
            log.exception("wyoming connection failed")
        finally:
            self._idle.pop(task, None)
            self._links.discard(task)
            await stream.shut()

    async def _link(self, stream: EventStream, task: asyncio.Task[None]) -> None:
        """Serve one connection's events until it closes or misbehaves."""
        link = WyomingLink(self.gateway.model)
        while not self._closing:
            self._idle[task] = stream
            try:
                event = await stream.read()
            except RtasrError as exc:
                await refuse(stream, exc, self.gateway)
                return
            finally:
                self._idle.pop(task, None)
            if event is None or self._closing:
                return
            step = link.take(event[0], event[1])
            for text in step.replies:
                await stream.write(text)
            if step.error is not None:
                await refuse(stream, step.error, self.gateway)
                return
            if step.command is not None:
                command = Command(stream, self.gateway)
                await self.gateway.run(command, WYOMING, step.command, WyomingDialect)
                if command.close_code != CLOSE_NORMAL:
                    return  # refused, failed, timed out or shut down: the connection ends


def keep_alive(writer: asyncio.StreamWriter, interval_s: float) -> None:
    """TCP keep-alive probes every `interval_s` (--ping-interval-s): a peer that vanished
    between commands is dropped after three unanswered, not kept for hours."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    seconds = max(1, int(interval_s))
    for name, value in (("TCP_KEEPIDLE", seconds), ("TCP_KEEPINTVL", seconds),
                        ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
