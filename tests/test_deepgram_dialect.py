"""The Deepgram dialect alone: scripted session messages in, Deepgram messages out."""

from __future__ import annotations

import json
from typing import Any

from rtasr.deepgram import DeepgramDialect
from rtasr.protocol import Final, Flush, SpeechStart, WireWord


def dialect(query: str = "") -> DeepgramDialect:
    return DeepgramDialect(query, default_language="en")


def final(utterance: int, start: float, end: float, endpoint: bool = True) -> Final:
    return Final(utterance=utterance, start=start, end=end, text="hello there",
                 words=[WireWord(word="hello", start=start, end=start + 0.3, probability=0.9),
                        WireWord(word="there", start=end - 0.3, end=end, probability=0.9)],
                 endpoint=endpoint)


def rendered(dg: DeepgramDialect, *messages: Any) -> list[dict[str, Any]]:
    return [json.loads(text) for m in messages for text in dg.render(m)]


def test_a_finalize_that_yields_no_final_marks_no_later_final() -> None:
    dg = dialect()
    assert isinstance(dg.control(json.dumps({"type": "Finalize"})), Flush)  # nothing open
    later = rendered(dg, SpeechStart(utterance=0, start=1.0), final(0, 1.0, 2.0))
    assert [r.get("from_finalize") for r in later] == [None]


def test_the_finalized_utterance_is_marked_and_only_it() -> None:
    dg = dialect()
    rendered(dg, SpeechStart(utterance=0, start=0.0), SpeechStart(utterance=1, start=2.0))
    dg.control(json.dumps({"type": "Finalize"}))  # flushes utterance 1, the open one
    out = rendered(dg, final(0, 0.0, 1.5), final(1, 2.0, 3.0, endpoint=False),
                   SpeechStart(utterance=2, start=4.0), final(2, 4.0, 5.0))
    assert [r.get("from_finalize") for r in out] == [None, True, None]


def test_a_late_final_does_not_end_the_next_utterance() -> None:
    dg = dialect("utterance_end_ms=1000")
    rendered(dg, SpeechStart(utterance=0, start=0.0))
    rendered(dg, SpeechStart(utterance=1, start=2.0))  # the speaker goes on ...
    rendered(dg, final(0, 0.0, 1.5))  # ... when utterance 0's final lands
    assert dg.on_audio(b"", 3.0) == []  # 1.5 s after its last word, mid-utterance 1
    rendered(dg, final(1, 2.0, 3.5))
    assert dg.on_audio(b"", 4.0) == []
    end = [json.loads(t) for t in dg.on_audio(b"", 4.6)]
    assert [(e["type"], e["last_word_end"]) for e in end] == [("UtteranceEnd", 3.5)]
