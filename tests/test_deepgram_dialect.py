"""The Deepgram dialect alone: scripted session messages in, Deepgram messages out."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from rtasr.core.protocol import Final, Flush, SpeechStart, WireWord
from rtasr.dialects.deepgram import DeepgramDialect
from rtasr.errors import ParameterError


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


def test_keywords_and_keyterms_become_the_prompt_without_boosts() -> None:
    dg = dialect("keywords=Asterisk:2&keywords=PBX&keywords=ratio:1.5:3&keywords=um:-10"
                 "&keyterm=voice+mail&keyterm=PBX&model=nova-3")
    assert dg.params.prompt == "voice mail, PBX, Asterisk, ratio:1.5"
    assert dialect("keyterm=&keywords=").params.prompt is None


def test_too_many_keyterms_are_refused() -> None:
    with pytest.raises(ParameterError, match="at most 500"):
        dialect("&".join(f"keyterm=term{i}" for i in range(100)))


@pytest.mark.parametrize("query", ["language=multi", "detect_language=true",
                                   "language=fr&detect_language=true"])
def test_multi_and_detect_language_detect_and_report_it(query: str) -> None:
    dg = dialect(query)
    assert dg.params.language is None
    out = rendered(dg, SpeechStart(utterance=0, start=0.0),
                   dataclasses.replace(final(0, 0.0, 1.0), language="es"))
    assert out[0]["channel"]["alternatives"][0]["languages"] == ["es"]
    assert out[0]["channel"]["detected_language"] == "es"
    assert {w["language"] for w in out[0]["channel"]["alternatives"][0]["words"]} == {"es"}


def test_a_given_language_is_passed_on_and_not_reported() -> None:
    dg = dialect("language=es-419&detect_language=false")
    assert dg.params.language == "es"
    out = rendered(dg, dataclasses.replace(final(0, 0.0, 1.0), language="es"))
    assert "languages" not in out[0]["channel"]["alternatives"][0]
    assert "language" not in out[0]["channel"]["alternatives"][0]["words"][0]


@pytest.mark.parametrize(("query", "diarize"), [
    ("", False), ("diarize=true", True), ("diarize=false", False),
    ("diarize_model=latest", True), ("diarize_model=v1&diarize=false", True)])
def test_diarize_and_diarize_model_ask_for_speakers(query: str, diarize: bool) -> None:
    assert dialect(query).params.diarize is diarize


def test_a_bad_diarize_value_is_refused() -> None:
    with pytest.raises(ParameterError, match="diarize must be true or false"):
        dialect("diarize=maybe")


def test_each_word_carries_its_own_speaker_and_confidence() -> None:
    dg = dialect("diarize=true")
    words = [WireWord(word="Yes.", start=0.0, end=0.4, probability=0.9, speaker=1,
                      speaker_confidence=0.7),
             WireWord(word="No.", start=0.6, end=1.0, probability=0.8, speaker=0,
                      speaker_confidence=0.55),
             WireWord(word="Maybe", start=1.2, end=1.6, probability=0.8)]  # not embedded
    (out,) = rendered(dg, Final(utterance=0, start=0.0, end=1.6, text="Yes. No. Maybe",
                                words=words, speaker=1))
    got = out["channel"]["alternatives"][0]["words"]
    assert [(w.get("speaker"), w.get("speaker_confidence")) for w in got] == [
        (1, 0.7), (0, 0.55), (None, None)]
    assert "speaker" not in out and "speaker" not in out["channel"]  # only on words


def test_without_diarize_words_carry_no_speaker() -> None:
    (out,) = rendered(dialect(), final(0, 0.0, 1.0))
    assert all(set(w) == {"word", "start", "end", "confidence", "punctuated_word"}
               for w in out["channel"]["alternatives"][0]["words"])
