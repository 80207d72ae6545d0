"""A final's words (sans-I/O): the decode's, joined to what the client was already told.

A final begins with its utterance's `committed` words, spelled as they were sent, and holds no
word an earlier final holds (after a cut, the continuation's decode may hear the last words of
the head again). Committed words that the decode lacks at its end were spoken just after a cut:
they stay in this final and the next utterance skips them. Finals go out in utterance order.
"""

from __future__ import annotations

import dataclasses

from .align import splice, strip_prefix
from .engine_api import Transcript
from .protocol import Final, WireWord


def final_words(result: Transcript, offset: float, end: float, skip: list[str],
                committed: list[str]) -> tuple[list[WireWord], list[str]]:
    """The final's words for `result` (decoded from `offset` s, up to `end` s), less the
    `skip` words an earlier final holds, beginning with the `committed` ones; and the
    committed words the decode lacks at its end, for the next utterance to skip."""
    timed = [WireWord(word=w.word.strip(), start=round(w.start + offset, 3),
                      end=round(w.end + offset, 3), probability=w.probability)
             for w in result.words]
    if not timed:  # decoded without word timestamps: spread the text over the span
        timed = spread(result.text.split(), offset, end)
    timed = timed[strip_prefix(skip, [w.word for w in timed]):]
    if not committed:
        return timed, []
    j, k = splice(committed, [w.word for w in timed])
    head = timed[:j]
    if len(head) == len(committed):  # the committed spelling, with the decode's times
        kept = [dataclasses.replace(w, word=c) for w, c in zip(head, committed, strict=True)]
    else:  # the committed words, over the time the decode's version of them took
        lo = head[0].start if head else (timed[0].start if timed else offset)
        hi = head[-1].end if head else lo
        kept = spread(committed, lo, hi)
    return kept + timed[j:], committed[k:]


def spread(words: list[str], start: float, end: float) -> list[WireWord]:
    """`words` timed evenly over [start, end] (where no decode timed them)."""
    step = (end - start) / max(1, len(words))
    return [WireWord(word=w, start=round(start + i * step, 3),
                     end=round(start + (i + 1) * step, 3), probability=1.0)
            for i, w in enumerate(words)]


class InOrder:
    """Finals go out in utterance order: one decoded before an earlier utterance's waits for
    it (None: an utterance with no final). Remembers what went out, for decoder prompts."""

    def __init__(self) -> None:
        self._held: dict[int, Final | None] = {}
        self._next = 0
        self.last_text = ""  # the last final's text: the prompt of a cut's continuation
        self.context = ""  # the last finals' text, --context-chars of it

    def put(self, index: int, final: Final | None, context_chars: int) -> list[Final]:
        """Utterance `index`'s final; returns the finals now due, in order."""
        self._held[index] = final
        due: list[Final] = []
        while self._next in self._held:
            ready = self._held.pop(self._next)
            self._next += 1
            if ready is not None:
                self.last_text = ready.text
                if context_chars > 0:
                    self.context = (self.context + " " + ready.text)[-context_chars:]
                due.append(ready)
        return due
