"""A session's decodes in flight, the same for every transport (connection.py's websockets,
files.py's uploads).

The sans-I/O `Session` asks for decodes (`DecodeJob`) and takes some back (`Cancel`);
`Decodes` runs each job as an asyncio task on the engine, cancels it when told, and hands its
outcome back to the session: `on_result`, or `on_failure` when it failed (a failed decode
costs its utterance, never the session). What the session answers goes to the transport's
`dispatch`, which hands it back to `start`.

Nobody awaits these tasks, so nothing may escape them unseen: an exception in handling an
outcome (`on_result`, `on_failure`, `dispatch`: a bug, not the model) is logged once, with
the session id and its traceback, and handed to the transport's `fail`, which ends that
session (a websocket closes with 1011, an upload answers 500); other sessions carry on.

With diarize on, the session also asks for speaker embeddings (`EmbedJob`: a final's speech in
pieces, asked for when the utterance ends, so it runs beside the final's decode): each runs as
a task too, through `embed` (engine/speakers.py's
`SpeakerEmbedder.embed`, off the loop, one call per piece), and its vectors go back with
`Session.on_embedding`. A failed embedding costs only the speaker: the
final goes out without one, and the failure is logged once per session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import numpy as np

from ..core.actions import Action, Cancel, DecodeJob, EmbedJob
from ..core.engine_api import DecodeRequest, Transcript
from ..core.protocol import ServerMessage
from ..core.session import Session
from ..errors import EngineError, RtasrError

MAX_FINALS_WAITING = 4  # a session's final decodes in flight before it stops taking audio


class Decodes:
    """One session's decode jobs, each an asyncio task until its outcome is dispatched."""

    def __init__(self, session: Session,
                 transcribe: Callable[[DecodeRequest], Awaitable[Transcript | None]],
                 dispatch: Callable[[list[Action]], None],
                 log: logging.Logger | logging.LoggerAdapter[logging.Logger],
                 fail: Callable[[Exception], None],
                 embed: Callable[[np.ndarray], Awaitable[np.ndarray]] | None = None) -> None:
        self.session = session
        self.transcribe = transcribe  # the engine's (or a transport's bound on it)
        self.dispatch = dispatch  # the session's actions that follow an outcome
        self.log = log
        self.fail = fail  # ends the session after a bug in handling an outcome
        self.failed: Exception | None = None  # the first such bug
        self.embed = embed  # speaker embeddings (--diarize), else None
        self.embed_failed = False  # an embedding failed (logged once)
        # jobs without an outcome yet
        self.tasks: dict[DecodeJob | EmbedJob, asyncio.Task[None]] = {}

    def start(self, actions: Iterable[Action]) -> list[ServerMessage]:
        """Start the decodes `actions` ask for, cancel those they take back; the messages
        among them, in order, for the transport to send."""
        messages: list[ServerMessage] = []
        for action in actions:
            if isinstance(action, DecodeJob | EmbedJob):
                self.tasks[action] = asyncio.create_task(self._decode(action))
            elif isinstance(action, Cancel):
                cancelled = self.tasks.pop(action.job, None)
                if cancelled is not None:
                    cancelled.cancel()
            else:
                messages.append(action)
        return messages

    def finals(self) -> list[asyncio.Task[None]]:
        """The decodes of utterances that ended, whichever kind serves as their final (the
        open utterance's partial or candidate is not one of them), and the embeddings that
        hold a final back (--diarize)."""
        return list(self._finals().values())

    def _finals(self) -> dict[DecodeJob | EmbedJob, asyncio.Task[None]]:
        speaking = self.session.segmenter.open_utterance
        open_index = None if speaking is None else speaking.index
        return {job: task for job, task in self.tasks.items()
                if isinstance(job, EmbedJob) or job.kind == "final"
                or job.utterance != open_index}

    async def room(self) -> None:
        """Return once fewer than MAX_FINALS_WAITING utterances' finals wait on the engine (at
        once unless the session is at the bound); a final and its speaker embedding, which run
        side by side, count once."""
        while self.finals_waiting() >= MAX_FINALS_WAITING:
            await asyncio.wait(self.finals(), return_when=asyncio.FIRST_COMPLETED)

    def finals_waiting(self) -> int:
        """Utterances whose finals are in flight (a decode, its embedding, or both)."""
        return len({job.utterance for job in self._finals()})

    def cancel(self) -> None:
        """Cancel every decode in flight (the session is over)."""
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    async def _decode(self, job: DecodeJob | EmbedJob) -> None:
        try:
            try:
                actions = await self._outcome(job)
            finally:  # out of `tasks` before its actions are dispatched: a transport woken
                # by them counts the decodes still in flight (uploads.py, a closing connection)
                self.tasks.pop(job, None)
            if self.failed is None:  # after a bug the session's state is not to be trusted
                self.dispatch(actions)
        except Exception as exc:
            if self.failed is not None:
                return  # the session is already ending for its first bug
            self.failed = exc
            self.log.exception("handling a %s of utterance %d failed",
                               "decode" if isinstance(job, DecodeJob) else "speaker embedding",
                               job.utterance)
            self.cancel()
            self.fail(exc)

    async def _outcome(self, job: DecodeJob | EmbedJob) -> list[Action]:
        """One decode; whatever fails (the engine, a Ray remote call) costs this job only."""
        if isinstance(job, EmbedJob):
            return self.session.on_embedding(job.utterance, await self._embedding(job))
        try:
            result = await self.transcribe(job.request)
        except RtasrError as exc:
            return self.session.on_failure(job, exc)
        except Exception as exc:
            self.log.exception("decode failed")
            return self.session.on_failure(job, EngineError(f"decode failed: {exc}"))
        return self.session.on_result(job, result)

    async def _embedding(self, job: EmbedJob) -> list[np.ndarray] | None:
        """The speaker embeddings of a final's speech pieces (handed to the embedder together,
        so they share its batch); None (logged once) if any failed."""
        try:
            if self.embed is None:
                raise RuntimeError("this server runs without --diarize")
            return list(await asyncio.gather(*(self.embed(piece) for piece in job.pieces)))
        except Exception:
            if not self.embed_failed:
                self.embed_failed = True
                self.log.exception("speaker embedding of utterance %d failed: its final (and "
                                   "any other that fails) goes out without a speaker",
                                   job.utterance)
            return None
