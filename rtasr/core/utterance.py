"""One utterance's state inside a Session: its decodes in flight, its hypotheses and the
words they settled (LocalAgreement-2), and what of a decode's transcript is its own.

Sans-I/O like session.py, which owns the policy of when to decode; this module owns what an
utterance makes of the transcripts that come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .actions import DecodeJob
from .align import common_prefix, splice, strip_prefix
from .audio import Audio
from .audio_context import Context
from .engine_api import Transcript


@dataclass
class Utterance:
    index: int
    start: int
    committed: list[str] = field(default_factory=list)
    tail: list[str] | None = None  # the last hypothesis' words after the committed ones
    skip: list[str] = field(default_factory=list)  # words an earlier final already holds
    partial_from: int = 0  # audio end of the last hypothesis decode asked for
    inflight: DecodeJob | None = None  # the one partial or candidate decode in flight
    last_done: tuple[DecodeJob, Transcript] | None = None
    paused: bool = False
    tail_end: int = 0  # while paused: where the utterance ends if the pause is an endpoint
    want_candidate: bool = False
    final_job: DecodeJob | None = None
    final_span: tuple[int, int, Audio] | None = None  # a final waiting for the decode in flight
    cut_check: int = 0  # when to look for a cut point next
    continues: bool = False  # opened by a cut: its speech goes on from the last final's
    context: Context | None = None  # the audio before it that its decodes hear too
    context_partials: bool = True  # its partials hear the context too, not only its finals
    closed: bool = False
    endpoint: bool = False  # ended because the speaker paused (not flushed, cut or too long)
    voiced: bool = False  # a decode of its audio came back with words of its own
    embedded: bool = False  # diarize=true: its speech's embeddings are asked for

    def own(self, job: DecodeJob, result: Transcript | None) -> Transcript | None:
        """The part of `job`'s transcript that is this utterance's: decoded with audio around
        its own (context before, lookahead after), the words said there are left out. None:
        the decode counts as dropped (a final is decoded again), and where the context is to
        blame, the utterance's decodes go without it from now on."""
        if result is None or not (job.before or job.after):
            self.voiced = self.voiced or bool(result and result.text)
            return result
        if not result.text:
            # heard with the audio around its own, tiny.en sometimes writes nothing at all
            self.context = None
            return None
        if not result.words:
            return result
        if job.before and self.context is not None:
            result = self.context.own_words(job, result)
        else:
            result = job.own_words(result)
        final_grade = job.kind != "partial" or self.final_job is job
        if not result.words and final_grade:
            # the context's words and none of its own: tiny.en dropped the last words before
            # the audio's end, or a reply in another language was heard as the context's
            # words again (base, an Italian turn and then a Russian one)
            self.context = None
            return None
        self.voiced = self.voiced or bool(result.text)
        return result

    def hypothesis(self, words: list[str], by_text: bool, holdback: int) -> bool:
        """Take a partial decode's words; False where none is new. `committed` grows by
        LocalAgreement-2: the words two hypotheses in a row agree on, short of the newest
        one's last `holdback` words (Whisper revises a word by what is said after it, so only
        words with speech decoded after them settle). It never shrinks: the hypothesis'
        version of the committed words is aligned away, not counted off ("I want to" +
        "I wanna go home" shows "I want to go home")."""
        if not by_text:
            words = words[strip_prefix(self.skip, words):]
        if not words:
            return False
        j, _ = splice(self.committed, words)
        tail = words[j:]
        if self.tail is not None:
            agreed = min(common_prefix(tail, self.tail), max(0, len(tail) - holdback))
            self.committed = self.committed + tail[:agreed]
            tail = tail[agreed:]
        self.tail = tail
        return True

    def skip_said(self, words: list[str]) -> None:
        """`words` were spoken at its start but are in the final before (a cut's head kept
        them as committed): its decodes leave them out, and so does `committed`."""
        self.skip = words
        del self.committed[: strip_prefix(words, self.committed)]
