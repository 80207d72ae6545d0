"""`rtasr transcribe`: stream audio files (or a microphone) to a running server.

Files are decoded with PyAV (already installed with faster-whisper) to 16 kHz mono PCM and
sent in 100 ms frames on the native protocol, as fast as the server takes them or, with
`--realtime`, at the pace of speech. Finals are printed as they arrive, as text, JSON lines,
SRT or WebVTT; with `--diarize` each speaker's turn is labelled (`Speaker 1: ...`,
core/subtitles.py). On a terminal, stderr shows a progress bar and the live partial.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .core import subtitles
from .errors import RtasrError

RATE = 16_000
FRAME_BYTES = RATE // 10 * 2  # 100 ms of s16le


class ClientError(RtasrError):
    """A user-facing failure of `rtasr transcribe` (missing file, no server, ...)."""

    code = "client_error"


def read_audio(path: Path) -> bytes:
    """The file's audio as 16 kHz mono s16le; ClientError if missing or not decodable."""
    import av

    if not path.is_file():
        raise ClientError(f"no such file: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ClientError(f"{path} has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            chunks = []
            for frame in container.decode(audio=0):
                chunks += [f.to_ndarray().tobytes() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().tobytes() for f in resampler.resample(None)]
    except av.FFmpegError as exc:
        raise ClientError(f"cannot read {path}: not an audio format PyAV can decode "
                          f"({exc.strerror or exc})") from None
    return b"".join(chunks)


@dataclass
class Writer:
    """Prints finals in one output format as they arrive."""

    fmt: str
    out: TextIO
    source: str = ""
    count: int = 0

    def begin(self) -> None:
        if self.fmt in subtitles.FORMATS:
            self.out.write(subtitles.header(self.fmt))

    def final(self, msg: dict[str, Any]) -> None:
        if self.fmt in subtitles.FORMATS:  # a cue per speaker's turn, labelled, with speakers
            cues = subtitles.final_cues(self.count + 1, msg, self.fmt)
            self.count += len(cues)
            self.out.write("".join(cues))
        else:
            self.count += 1
            self.out.write(json.dumps({"file": self.source, **msg}, ensure_ascii=False) + "\n")
        self.out.flush()


@dataclass
class Status:
    """One self-overwriting line on a terminal's stderr: progress and the live partial."""

    enabled: bool = field(default_factory=lambda: sys.stderr.isatty())
    label: str = ""
    total_s: float = 0.0
    sent_s: float = 0.0
    partial: str = ""

    def show(self) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 20)).columns
        bar = ""
        if self.total_s:
            done = int(20 * min(1.0, self.sent_s / self.total_s))
            bar = f"[{'#' * done}{'.' * (20 - done)}] {self.sent_s:5.1f}/{self.total_s:.1f} s "
        line = f"{self.label} {bar}{self.partial}"
        sys.stderr.write("\r\x1b[2K" + line[: width - 1])
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


async def transcribe(url: str, frames: AsyncIterator[bytes], writer: Writer, status: Status,
                     api_key: str | None = None) -> None:
    """Send `frames`, then `end`; print every final until the server's `end`. Raises
    ClientError, after printing what came, when the server ended the stream before all of
    it was heard (a shutdown) or reported an utterance it could not transcribe."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    sep = "&" if "?" in url else "?"
    try:
        ws = await connect(f"{url}{sep}sample_rate={RATE}&encoding=pcm_s16le",
                           additional_headers=headers, max_size=None, open_timeout=10)
    except InvalidStatus as exc:
        code = exc.response.status_code
        why = "a valid --api-key is needed" if code == 401 else f"HTTP {code}"
        raise ClientError(f"the server at {url} refused the connection: {why}") from None
    except (OSError, TimeoutError) as exc:
        refused = isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc)
        why = "connection refused" if refused else str(getattr(exc, "strerror", None) or exc)
        raise ClientError(f"cannot connect to {url}: {why} (is `rtasr serve` running there?)"
                          ) from None
    async with ws:
        ready = json.loads(await ws.recv())
        if ready["type"] == "error":
            raise ClientError(f"the server refused the session: {ready['message']}")

        sent_all = False
        errors: list[str] = []

        async def send() -> None:
            nonlocal sent_all
            async for frame in frames:
                await ws.send(frame)
                status.sent_s += len(frame) / 2 / RATE
                status.show()
            await ws.send(json.dumps({"type": "end"}))
            sent_all = True

        sender = asyncio.create_task(send())
        ended = False
        try:
            async for text in ws:
                msg = json.loads(text)
                if msg["type"] == "partial":
                    status.partial = msg["text"]
                    status.show()
                elif msg["type"] == "final":
                    status.clear()
                    writer.final(msg)
                    status.partial = ""
                    status.show()
                elif msg["type"] == "error":
                    status.clear()
                    errors.append(msg["code"])
                    print(f"rtasr: server: {msg['message']} ({msg['code']})", file=sys.stderr)
                elif msg["type"] == "end":
                    ended = True
                    break
        finally:
            sender.cancel()
            status.clear()
    if not (ended and sent_all):
        raise ClientError(f"the stream was cut short by the server (close code "
                          f"{ws.close_code}): the transcript covers {status.sent_s:.1f} s at "
                          "most")
    if errors:
        raise ClientError(f"the transcript misses words: the server reported "
                          f"{', '.join(errors)}")


async def paced(data: bytes, *, frame_bytes: int = FRAME_BYTES, frame_s: float = 0.1,
                speed: float | None = 1.0) -> AsyncIterator[bytes]:
    """`data` in frames of `frame_bytes`, each `frame_s` of audio, at `speed` x real time
    (None: as fast as they are taken). Frame i goes out at `i * frame_s / speed` from the
    first, so the pace does not drift however long the stream."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, off in enumerate(range(0, len(data), frame_bytes)):
        yield data[off : off + frame_bytes]
        if speed is not None:
            await asyncio.sleep(max(0.0, t0 + (i + 1) * frame_s / speed - loop.time()))


async def file_frames(pcm: bytes, realtime: bool) -> AsyncIterator[bytes]:
    async for frame in paced(pcm, speed=1.0 if realtime else None):
        yield frame


@dataclass
class Received:
    at: float  # seconds since the first audio frame was sent
    msg: dict[str, Any]


@dataclass
class Recording:
    """Everything a server said in one streamed session (see `stream`)."""

    ready: dict[str, Any]
    messages: list[Received] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r.msg for r in self.messages if r.msg["type"] == kind]

    @property
    def text(self) -> str:
        return " ".join(m["text"] for m in self.of("final"))


async def stream(url: str, data: bytes, *, rate: int = RATE, encoding: str = "pcm_s16le",
                 frame_s: float = 0.1, speed: float | None = 1.0, query: str = "",
                 end: bool = True, headers: dict[str, str] | None = None) -> Recording:
    """The one paced streaming client (tests, benchmarks): open a native session, send `data`
    (already encoded) in `frame_s` frames at `speed` x real time, then `end`; record every
    message with its arrival time until the server closes. A refused session (its first
    message an error) comes back with no audio sent."""
    from websockets.asyncio.client import connect

    width = 4 if encoding == "pcm_f32le" else 1 if encoding in ("mulaw", "alaw") else 2
    frame_bytes = max(width, int(frame_s * rate) * width)
    join = "&" if "?" in url else "?"
    extra = f"&{query}" if query else ""
    full = f"{url}{join}sample_rate={rate}&encoding={encoding}{extra}"
    async with connect(full, max_size=None, additional_headers=headers or {}) as ws:
        rec = Recording(ready=json.loads(await ws.recv()))
        if rec.ready["type"] == "error":
            return rec
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def receive() -> None:
            async for text in ws:
                rec.messages.append(Received(loop.time() - t0, json.loads(text)))

        receiver = asyncio.create_task(receive())
        try:
            async for frame in paced(data, frame_bytes=frame_bytes, frame_s=frame_s,
                                     speed=speed):
                await ws.send(frame)
            if end:
                await ws.send(json.dumps({"type": "end"}))
            await receiver
        finally:
            receiver.cancel()
        rec.close_code = ws.close_code
    return rec


async def mic_frames(stop: asyncio.Event) -> AsyncIterator[bytes]:
    """The default microphone, 100 ms at a time, until `stop` (Ctrl-C)."""
    try:
        import sounddevice as sd
    except ImportError:
        raise ClientError("--mic needs sounddevice: pip install 'rtasr[mic]'") from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def on_audio(data: Any, frames: int, time: Any, flags: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

    try:
        stream = sd.RawInputStream(samplerate=RATE, channels=1, dtype="int16",
                                   blocksize=RATE // 10, callback=on_audio)
    except Exception as exc:  # PortAudio reports a missing device in many ways
        raise ClientError(f"cannot open the microphone: {exc}") from None
    stopping = asyncio.ensure_future(stop.wait())  # one waiter for the whole stream
    try:
        with stream:
            print("listening; Ctrl-C to stop", file=sys.stderr)
            while not stop.is_set():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
    finally:
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping


def with_diarize(url: str, diarize: bool) -> str:
    """The server's websocket URL, asking for speakers (`diarize=true`) when `diarize`."""
    if not diarize:
        return url
    return f"{url}{'&' if '?' in url else '?'}diarize=true"


async def _from_mic(url: str, fmt: str, api_key: str | None) -> None:
    """Stream the microphone until Ctrl-C, then send `end` and print the last finals."""
    import signal

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await transcribe(url, mic_frames(stop), Writer(fmt, sys.stdout, "mic"), Status(label="mic"),
                     api_key)


def _output_name(path: Path, files: list[Path], fmt: str) -> str:
    """NAME.txt/.json/.srt/.vtt; NAME.wav.srt where another input has the same stem."""
    ext = "txt" if fmt == "text" else fmt
    same_stem = sum(f.stem == path.stem for f in files) > 1
    return f"{path.name if same_stem else path.stem}.{ext}"


def run(files: list[Path], *, url: str, fmt: str, realtime: bool, mic: bool,
        output_dir: Path | None, api_key: str | None, diarize: bool = False) -> None:
    """The `transcribe` command. Raises ClientError for anything the user can fix."""
    api_key = api_key or os.environ.get("RTASR_API_KEY") or None
    url = with_diarize(url, diarize)
    if mic:
        asyncio.run(_from_mic(url, fmt, api_key))
        return
    if not files:
        raise ClientError("give one or more audio files, or --mic")
    if len(files) > 1 and fmt in ("srt", "vtt") and output_dir is None:
        raise ClientError(f"{fmt} of several files needs --output-dir (one file each)")
    audio = {path: read_audio(path) for path in files}  # every file readable before starting
    for path, pcm in audio.items():
        out: TextIO = sys.stdout
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            out = (output_dir / _output_name(path, files, fmt)).open("w")
        elif len(files) > 1 and fmt == "text":
            print(f"==> {path} <==", flush=True)
        writer = Writer(fmt, out, str(path))
        writer.begin()
        status = Status(label=path.name, total_s=len(pcm) / 2 / RATE)
        try:
            asyncio.run(transcribe(url, file_frames(pcm, realtime), writer, status, api_key))
        finally:
            if out is not sys.stdout:
                out.close()

