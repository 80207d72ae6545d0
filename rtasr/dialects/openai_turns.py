"""The user turns of an OpenAI realtime transcription session: the session core's utterances
rendered as OpenAI's items, under either of its two turn detections.

- `VadTurns` (server VAD): one item per utterance. `speech_started` at its start,
  `speech_stopped` and `committed` at its pause (or `committed` alone at a cut in running
  speech, which ends no turn), then `delta`s and `completed` with its final.
- `ManualTurns` (`turn_detection: null`): only the client's `input_audio_buffer.commit` ends an
  item; the utterances spoken up to it are joined into it, and it is completed with the final
  of the last of them.

Both hand out `input_audio_buffer.committed` through one `Chain`, so each names the item
committed before it whichever detection committed that one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..core.align import splice
from ..core.protocol import Error, Final, Partial, SpeechEnd, SpeechStart


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(kind: str, **fields: Any) -> str:
    data = {"type": kind, "event_id": new_id("event"), **fields}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Item:
    """One user turn: an `item_id`, the utterances it spans, its text so far."""

    id: str = field(default_factory=lambda: new_id("item"))
    finals: list[str] = field(default_factory=list)
    sent: str = ""  # the deltas sent so far, joined
    start_s: float | None = None
    end_s: float = 0.0
    last: int = -1  # the highest utterance it holds
    committed: bool = False  # server VAD: `committed` sent (at the pause or the cut)
    failed: bool = False  # `failed` sent: no `completed` follows

    def text(self, tail: str = "") -> str:
        return " ".join(t for t in (*self.finals, tail) if t)

    def delta(self, text: str) -> str:
        """What `text` adds to the deltas sent. Words sent are never taken back: where
        `text` spells them differently, only its words after them are new."""
        if text.startswith(self.sent):
            added = text[len(self.sent):]
        else:
            words = text.split()
            new = words[splice(self.sent.split(), words)[0]:]
            added = (" " if self.sent else "") + " ".join(new) if new else ""
        self.sent += added
        return added


class Chain:
    """The order items were committed in: each `committed` names the one before it."""

    def __init__(self) -> None:
        self.previous: str | None = None

    def committed(self, item: Item) -> str:
        previous, self.previous = self.previous, item.id
        return event("input_audio_buffer.committed", item_id=item.id,
                     previous_item_id=previous)


class Turns:
    """What both turn detections share: an utterance's item, its deltas, its completion."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def item_for(self, utterance: int) -> Item:
        raise NotImplementedError

    def speech_start(self, message: SpeechStart) -> list[str]:
        raise NotImplementedError

    def speech_end(self, message: SpeechEnd) -> list[str]:
        return []  # only server VAD ends a turn at a pause

    def final(self, message: Final) -> list[str]:
        raise NotImplementedError

    def settled(self, open_utterance: int | None) -> list[str]:
        """Called whenever no final is awaited; `open_utterance` is still being spoken."""
        raise NotImplementedError

    def partial(self, message: Partial) -> list[str]:
        item = self._started_item(message.utterance, message.start)
        return self.delta(item, item.text(message.committed.strip()))

    def delta(self, item: Item, text: str) -> list[str]:
        """The delta event for what `text` adds to the item's deltas, if anything."""
        added = item.delta(text)
        return [event("conversation.item.input_audio_transcription.delta", item_id=item.id,
                      content_index=0, delta=added)] if added else []

    def completed(self, item: Item) -> list[str]:
        if item.failed:
            return []
        seconds = round(max(item.end_s - (item.start_s or 0.0), 0.0), 3)
        return [event("conversation.item.input_audio_transcription.completed",
                      item_id=item.id, content_index=0, transcript=item.sent,
                      usage={"type": "duration", "seconds": seconds})]

    def failed(self, utterance: int, error: Error) -> list[str]:
        """The utterance could not be transcribed: its item gets `failed`, never
        `completed`."""
        item, out = self._failing(utterance)
        if item.failed:
            return out
        item.failed = True
        return [*out, event("conversation.item.input_audio_transcription.failed",
                            item_id=item.id, content_index=0,
                            error={"type": "server_error", "code": error.code,
                                   "message": error.message, "param": None})]

    def _failing(self, utterance: int) -> tuple[Item, list[str]]:
        """A failed utterance's item, and what must go before its `failed`."""
        return self.item_for(utterance), []

    def spared(self, utterance: int) -> bool:
        """Whether a clear spares this utterance's final (it was committed before)."""
        return False

    def _started_item(self, utterance: int, start_s: float) -> Item:
        item = self.item_for(utterance)
        if item.start_s is None:
            item.start_s = start_s
        return item


class VadTurns(Turns):
    """Server VAD: an item per utterance, committed at its pause or its cut."""

    def __init__(self, chain: Chain) -> None:
        super().__init__(chain)
        self.items: dict[int, Item] = {}
        self.started: set[int] = set()  # utterances whose speech_started went out

    def item_for(self, utterance: int) -> Item:
        item = self.items.setdefault(utterance, Item())
        item.last = max(item.last, utterance)
        return item

    def spared(self, utterance: int) -> bool:
        item = self.items.get(utterance)
        return item is not None and item.committed

    def speech_start(self, message: SpeechStart) -> list[str]:
        item = self._started_item(message.utterance, message.start)
        if message.continues and message.utterance - 1 in self.started:
            # a cut in running speech (session.py opens the next before it finals the cut
            # one): the audio before it is committed, and the turn goes on into this item;
            # no stop, no new start
            self.started.discard(message.utterance - 1)
            self.started.add(message.utterance)
            return self._commit(message.utterance - 1)
        self.started.add(message.utterance)
        return [event("input_audio_buffer.speech_started",
                      audio_start_ms=round(message.start * 1000), item_id=item.id)]

    def speech_end(self, message: SpeechEnd) -> list[str]:
        return [*self._stopped(message.utterance, message.end),
                *self._commit(message.utterance)]

    def final(self, message: Final) -> list[str]:
        item = self.items.pop(message.utterance, None) or Item(start_s=message.start)
        item.finals.append(message.text.strip())
        item.end_s = message.end
        out = self._stopped(message.utterance, message.end, item)  # a flush or the end
        if not item.committed:
            item.committed = True
            out.append(self.chain.committed(item))
        return out + self.delta(item, item.text()) + self.completed(item)

    def settled(self, open_utterance: int | None) -> list[str]:
        """Complete the items committed at a pause or cut that got no words, and stop the
        speech of utterances that ended without words."""
        out: list[str] = []
        for utterance, item in sorted(self.items.items()):
            if item.committed:
                del self.items[utterance]
                out += self.completed(item)
        for utterance in sorted(self.started - {open_utterance}):
            item = self.items.pop(utterance, Item())
            self.started.discard(utterance)
            out.append(event("input_audio_buffer.speech_stopped",
                             audio_end_ms=round(item.end_s * 1000), item_id=item.id))
        return out

    def _failing(self, utterance: int) -> tuple[Item, list[str]]:
        """The item is committed, as any turn, before its `failed`."""
        item = self.items.pop(utterance, None) or Item()
        out = self._stopped(utterance, item.end_s, item)
        if not item.committed:
            item.committed = True
            out.append(self.chain.committed(item))
        return item, out

    def _commit(self, utterance: int) -> list[str]:
        """`committed` for the utterance's item, now: at its pause or its cut, before its
        final (OpenAI commits at speech_stopped and completes when the text is ready)."""
        item = self.item_for(utterance)
        if item.committed:
            return []
        item.committed = True
        return [self.chain.committed(item)]

    def _stopped(self, utterance: int, end: float, item: Item | None = None) -> list[str]:
        """`speech_stopped` for the turn `utterance` ends, if it is still open: at the pause
        (SpeechEnd), or with the final where no pause ended it."""
        if utterance not in self.started:
            return []
        self.started.discard(utterance)
        item = item or self.item_for(utterance)
        item.end_s = end
        return [event("input_audio_buffer.speech_stopped", audio_end_ms=round(end * 1000),
                      item_id=item.id)]


class ManualTurns(Turns):
    """`turn_detection: null`: the item collecting, and the committed ones awaiting the final
    of the last utterance each holds."""

    def __init__(self, chain: Chain) -> None:
        super().__init__(chain)
        self.open: Item | None = None
        self.committing: list[tuple[Item, int]] = []  # (item, the utterance it ends with)

    def item_for(self, utterance: int) -> Item:
        item = next((i for i, upto in self.committing if utterance <= upto), None) \
            or self.open or Item()
        if not self.committing or utterance > self.committing[-1][1]:
            self.open = item
        item.last = max(item.last, utterance)
        return item

    def commit(self) -> list[str]:
        """Commit the turn being collected: `committed` now, `completed` with the final of
        the last utterance it holds."""
        item, self.open = self.open or Item(), None
        self.committing.append((item, item.last))
        return [self.chain.committed(item)]

    def commit_open(self) -> list[str]:
        """Commit the turn being collected, if any (turn detection is switched on)."""
        return self.commit() if self.open is not None else []

    def speech_start(self, message: SpeechStart) -> list[str]:
        self._started_item(message.utterance, message.start)
        return []

    def final(self, message: Final) -> list[str]:
        out: list[str] = []
        while self.committing and self.committing[0][1] < message.utterance:
            out += self.completed(self.committing.pop(0)[0])  # that one had no words
        item = self._started_item(message.utterance, message.start)
        item.finals.append(message.text.strip())
        item.end_s = message.end
        out += self.delta(item, item.text())
        if self.committing and self.committing[0][1] <= message.utterance:
            out += self.completed(self.committing.pop(0)[0])
        return out

    def settled(self, open_utterance: int | None) -> list[str]:
        """Complete the commits no final will answer (no words in them)."""
        out: list[str] = []
        for item, _ in self.committing:
            out += self.completed(item)
        self.committing.clear()
        return out
