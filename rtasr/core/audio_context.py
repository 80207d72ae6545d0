"""The audio of the utterance before, heard by an utterance's decodes (sans-I/O; --context-s).

A piece decoded cold mishears its first words ("4 to record" as "For to record"). So an
utterance that goes on from the one before (opened by a run-on cut, or starting soon after
it ended) is decoded with that one's audio in front of its own. The decode writes the
context's words again. Those the earlier final holds are found in its text
(`align.context_end`) and left out: word times near the boundary are not exact enough to
split on. Until that final is out, or where its words are not found, the words whose middle
lies in the context are left out (`DecodeJob.own_words`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SAMPLE_RATE_HZ
from . import cuts
from .actions import DecodeJob
from .align import context_end, norm
from .audio import Audio
from .engine_api import Transcript
from .protocol import WireWord

ANCHOR = 8  # the context's last words that are looked for in a decode with it
STRAY_S = 0.1  # how far inside the context a word's middle must lie to count as its own


@dataclass
class Context:
    audio: Audio
    start: float  # where it begins (s)
    words: list[WireWord] | None = None  # the earlier final's words in it, once known

    @classmethod
    def of(cls, audio: Audio, end: int, most: int) -> Context | None:
        """The context after `audio` (ending at sample `end`): all of it, or, where it is
        longer than `most` samples, from a quiet gap in its last `most` (no word cut in
        half: tiny.en then skips the words after it). None: no context."""
        if not most or not len(audio):
            return None
        if len(audio) > most:
            offset = cuts.context_start(audio[-most:])
            if offset is None:
                return None
            audio = audio[len(audio) - most + offset :]
        return cls(audio, round((end - len(audio)) / SAMPLE_RATE_HZ, 3))

    def hear(self, final: list[WireWord]) -> None:
        """The earlier final is out: its words said in the context (those whose middle lies
        in it; words heard on both sides of a cut count as the final's)."""
        self.words = [w for w in final if (w.start + w.end) / 2 >= self.start]

    def fit(self, own: int, window_s: float) -> Audio:
        """The part of the context a decode of `own` samples hears: as much as fits in the
        encoder window with them (the context must not widen the window: the encoder's cost
        is the window's), from a quiet gap where not all of it fits."""
        room = int((window_s if window_s > 0 else 30.0) * SAMPLE_RATE_HZ) - own
        if len(self.audio) <= room:
            return self.audio
        offset = cuts.context_start(self.audio[-room:]) if room > cuts.CONTEXT_MIN else None
        return self.audio[len(self.audio) - room + offset :] if offset is not None \
            else self.audio[:0]

    def own_words(self, job: DecodeJob, result: Transcript) -> Transcript:
        """The words of `job`'s decode (heard with `job.before` samples of this context)
        that are the utterance's own: those after the earlier final's words, found by text
        (`job.by_text`), else those whose middle lies in the utterance's own audio."""
        said = None
        if self.words is not None:
            begins = self.start + (len(self.audio) - job.before) / SAMPLE_RATE_HZ
            said = [w.word for w in self.words if (w.start + w.end) / 2 >= begins]
        if said:
            words = result.words
            n, edits = context_end(said, [w.word for w in words], ANCHOR)
            if 4 * edits <= sum(len(norm(w)) for w in said[-ANCHOR:]):
                job.by_text = True
                if not n or norm(words[n - 1].word) != norm(said[-1]):
                    # The final's last word, spelled otherwise here ("un" for "1"), is not
                    # in the match: the words after it that were said well inside the
                    # context are that word again. (Where the match ends on the final's
                    # last word, such words are ones that final lacks, and are kept.)
                    inside = job.before / SAMPLE_RATE_HZ - STRAY_S
                    while n < len(words) and (words[n].start + words[n].end) / 2 < inside:
                        n += 1
                return job.own_words(result, first=n)
        return job.own_words(result)
