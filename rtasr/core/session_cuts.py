"""Run-on speech, for `Session`: where a long utterance is cut into finals, and the cut
head's final that waits for the audio after the cut (--cut-lookahead-s).

Run-on speech (a word spoken is in exactly one final): a long utterance is cut only where the
audio is silent, never between two word timestamps. Speech that resumes after a pause of
`pause_ms` in an utterance of at least `pause_cut_s` is cut at that pause; past `commit_cut_s`,
the utterance is cut in the middle of its longest quiet gap (frame energy) of at least 200 ms,
or 150, 120, 90 ms 1, 2, 3 s later (cuts.py: a breath inside a sentence is shorter than a pause
between two); past `max_utterance_s` with no gap at all, at its quietest frame. The rest
carries on as the next utterance. The head's final is the pause's speculative decode or the
head decoded alone; with `cut_lookahead_s` (off by default), the head decoded with that much of
the audio after the cut too, keeping only the words before it (its last words are misheard less
when the model hears how they go on), so it waits for that audio.
"""

from __future__ import annotations

from ..config import Config
from . import cuts
from .actions import Action, Cancel, DecodeJob, JobKind
from .audio import Audio
from .audio_context import Context
from .buffer import Segmenter, SpeechEnded
from .protocol import WireWord
from .utterance import Utterance
from .vad import QUIET_HOP


class RunOnCuts:
    """The cut methods of `Session` (a mixin: they read and change the session's state)."""

    config: Config
    segmenter: Segmenter
    _utts: dict[int, Utterance]
    _heads: list[tuple[Utterance, int, Audio]]  # cut heads whose finals wait for lookahead
    _said: tuple[int, list[WireWord]] | None
    _pause_cut_samples: int
    _commit_cut_samples: int
    _max_utt_samples: int
    _context_samples: int
    _lookahead_samples: int

    def _open(self, index: int, start: int, actions: list[Action], *,
              continues: bool = False) -> None:
        raise NotImplementedError

    def _on_ended(self, event: SpeechEnded, actions: list[Action]) -> None:
        raise NotImplementedError

    def _job(self, kind: JobKind, utt: Utterance, start: int, end: int, audio: Audio,
             ahead: Audio | None = None) -> DecodeJob:
        raise NotImplementedError

    def _embed(self, utt: Utterance, start: int, audio: Audio, actions: list[Action]) -> None:
        raise NotImplementedError

    def _on_resumed(self, utt: Utterance, actions: list[Action]) -> None:
        """Speech resumed after a pause: in a long enough utterance the pause is a cut, and
        the speculative decode of the audio up to it is the head's final."""
        utt.paused = utt.want_candidate = False
        if utt.tail_end - utt.start >= self._pause_cut_samples:
            self._cut(utt, utt.tail_end, actions)

    def _cut_point(self, start: int, pos: int) -> int | None:
        """Where to cut the open utterance [start, pos), leaving both sides `MIN_PART`
        long (cuts.py). None: not yet."""
        lo = start + cuts.MIN_PART
        if lo >= pos:
            return None
        hard = pos - start >= self._max_utt_samples
        shortest = QUIET_HOP if hard else cuts.min_gap(pos - start - self._commit_cut_samples)
        at = cuts.cut_point(self.segmenter.buffer.read(lo, pos), shortest, hard)
        return None if at is None else lo + at

    def _cut(self, utt: Utterance, at: int, actions: list[Action]) -> None:
        """End `utt` at sample `at` (a final for [start, at)) and open the next there."""
        if not utt.start < at <= self.segmenter.position:
            return
        buffer = self.segmenter.buffer
        audio = buffer.read(utt.start, at)
        # the next utterance's decodes hear the head's audio too, and leave out the words
        # its final holds: a word just after a cut is misheard less (docs/benchmarks.md)
        context = self._context_of(utt.index, buffer.read(max(buffer.start, utt.start), at), at)
        started = self.segmenter.cut(at, keep=len(context.audio) if context else 0)
        # the next utterance opens first: a client hears that the speech goes on before the
        # cut one's final (ready at once where a candidate decoded it)
        self._open(started.utterance, started.start, actions, continues=True)
        self._utts[started.utterance].context = context
        if not self._lookahead_samples:
            self._on_ended(SpeechEnded(utt.index, utt.start, at, audio, forced=True), actions)
            return
        # --cut-lookahead-s: the head's final hears the words after the cut too (its last
        # words are misheard less), so it waits for them
        utt.closed, utt.endpoint = True, False
        self._heads.append((utt, at, audio))
        self._due_heads(actions)

    def _context_of(self, index: int, audio: Audio, end: int, most: int | None = None
                    ) -> Context | None:
        """The context of the utterance after `index`, whose audio is `audio`: at most `most`
        samples of it (default --context-s) (audio_context.py)."""
        context = Context.of(audio, end, self._context_samples if most is None else most)
        if context is not None and self._said is not None and self._said[0] == index:
            context.hear(self._said[1])  # its final is out
        return context

    def _due_heads(self, actions: list[Action], force: bool = False) -> None:
        """Decode the finals of the cut heads whose lookahead has arrived (`force`: all, with
        the audio there is: the speech after the cut has ended)."""
        buffer, pos = self.segmenter.buffer, self.segmenter.position
        while self._heads:
            utt, at, audio = self._heads[0]
            if not force and pos < at + self._lookahead_samples:
                return
            self._heads.pop(0)
            ahead = (buffer.read(at, min(pos, at + self._lookahead_samples))
                     if buffer.start <= at else None)
            job = utt.inflight
            if job is not None:  # a partial or candidate without the lookahead: not wanted
                utt.inflight = None
                actions.append(Cancel(job))
            utt.final_job = self._job("final", utt, utt.start, at, audio, ahead)
            actions.append(utt.final_job)
            self._embed(utt, utt.start, audio, actions)

