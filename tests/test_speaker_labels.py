"""Known speakers and speaker labels, without a model: the tracker's enrolled voices, the
session's, the bounds on OpenAI's known_speaker_* fields (core/limits.py), the labels
(A, B, ... and Speaker 1, ...) and diarized_json's shape as the openai SDK reads it."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from rtasr.core import limits
from rtasr.core.protocol import Final, WireWord
from rtasr.core.speakers import SpeakerOptions, SpeakerTracker
from rtasr.errors import ParameterError
from rtasr.server.rest import openai_speakers
from rtasr.server.rest.openai_speakers import Speakers

from .test_speaker_finals import VOICE_A, VOICE_B, driver, two_turns

VOICE_C = np.eye(192)[2]


def data_url(data: bytes, media: str = "audio/wav") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def test_enrolled_voices_take_the_first_numbers_and_are_matched_like_any_other() -> None:
    tracker = SpeakerTracker()
    assert [tracker.enroll(VOICE_A), tracker.enroll(VOICE_B)] == [0, 1]
    assert tracker.assign(VOICE_B + 0.1 * VOICE_C, 2.0).speaker == 1
    assert tracker.assign(VOICE_C, 2.0).speaker == 2  # an unknown voice opens the next one
    assert tracker.assign(VOICE_A, 0.3).speaker == 0  # a short turn joins its nearest
    assert tracker.count == 3


def test_enrolling_is_bounded_like_every_speaker() -> None:
    tracker = SpeakerTracker(SpeakerOptions(max_speakers=1))
    tracker.enroll(VOICE_A)
    with pytest.raises(ValueError, match="at most 1"):
        tracker.enroll(VOICE_B)
    with pytest.raises(ValueError, match="non-zero"):
        SpeakerTracker().enroll(np.zeros(192))


def test_a_session_with_known_voices_labels_their_turns_with_their_numbers() -> None:
    d = driver()
    d.session.enroll_speakers([VOICE_B, VOICE_A])
    two_turns(d)
    d.take(d.session.on_embedding(0, VOICE_A))
    d.take(d.session.on_embedding(1, VOICE_C))
    assert [f.speaker for f in d.of(Final)] == [1, 2]


def test_known_speakers_are_parsed_in_order() -> None:
    known = limits.known_speakers([" agent ", "customer"],
                                  [data_url(b"RIFF1"), data_url(b"RIFF22", "audio/mpeg")])
    assert known == [("agent", b"RIFF1"), ("customer", b"RIFF22")]


BIG = data_url(b"x" * (limits.MAX_REFERENCE_BYTES + 1))
HALF = data_url(b"x" * (limits.MAX_REFERENCES_BYTES // 2))


@pytest.mark.parametrize(("names", "clips", "param", "why"), [
    (["a"] * 5, [data_url(b"x")] * 5, "known_speaker_references[]", "at most 4"),
    (["a", "b"], [data_url(b"x")], "known_speaker_references[]", "2 names, 1 clips"),
    (["a", "a"], [data_url(b"x")] * 2, "known_speaker_names[]", "twice"),
    (["<v B>"], [data_url(b"x")], "known_speaker_names[]", "without <, > or &"),
    ([""], [data_url(b"x")], "known_speaker_names[]", "1 to 64"),
    (["x" * 65], [data_url(b"x")], "known_speaker_names[]", "at most 64"),
    (["a"], ["https://example.com/a.wav"], "known_speaker_references[]", "base64 data URL"),
    (["a"], ["data:audio/wav;base64,%%%"], "known_speaker_references[]", "not valid base64"),
    (["a"], [BIG], "known_speaker_references[]", "at most 2097152 bytes"),
    (["a", "b", "c"], [HALF] * 3, "known_speaker_references[]", "together"),
    (["a"], [{"url": "x"}], "known_speaker_references[]", "must be a string"),
])
def test_known_speakers_are_bounded(names: list[Any], clips: list[Any], param: str,
                                    why: str) -> None:
    with pytest.raises(ParameterError, match=why) as refused:
        limits.known_speakers(names, clips)
    assert refused.value.param == param


def test_labels_name_the_known_and_letter_or_number_the_rest() -> None:
    speakers = Speakers(("A", "agent"), (b"", b""))
    assert [speakers.label(n) for n in range(5)] == ["A", "agent", "B", "C", "D"]
    assert [speakers.person(n) for n in range(4)] == ["A", "agent", "Speaker 1", "Speaker 2"]
    assert [Speakers().label(n) for n in (0, 25, 26, 27)] == ["A", "Z", "AA", "AB"]


@pytest.mark.parametrize(("fields", "fmt", "task", "why"), [
    ({"diarize": ["true"]}, "json", "transcribe", "no place for speakers"),
    ({}, "verbose_json", "transcribe", None),
    ({"known_speaker_names[]": ["a"]}, "json", "transcribe", "need response_format"),
    ({}, "diarized_json", "translate", "not translations"),
])
def test_which_requests_ask_for_speakers(fields: dict[str, list[str]], fmt: str, task: str,
                                         why: str | None) -> None:
    if why is None:
        assert openai_speakers.parse(fields, fmt, task) is None
        return
    with pytest.raises(ParameterError, match=why):
        openai_speakers.parse(fields, fmt, task)


def word(text: str, start: float, end: float, speaker: int | None) -> WireWord:
    return WireWord(word=text, start=start, end=end, probability=0.9, speaker=speaker)


# one final whose words two people said (a speaker change inside an utterance), then another
SPLIT = Final(utterance=0, start=0.2, end=3.0, text="Hello there. Hi.", speaker=0,
              words=[word("Hello", 0.3, 0.8, 0), word("there.", 0.8, 1.4, 0),
                     word("Hi.", 2.0, 2.6, 1)])
LATER = Final(utterance=1, start=4.0, end=5.0, text="Bye.", speaker=0,
              words=[word("Bye.", 4.1, 4.6, None)])


def test_diarized_json_is_what_the_openai_sdk_reads() -> None:
    from openai.types.audio import TranscriptionDiarized

    body = openai_speakers.diarized_body([SPLIT, LATER], Speakers(("agent",), (b"",)), 5.5)
    parsed = TranscriptionDiarized.model_validate(body)
    assert [(s.id, s.speaker, s.text, s.start, s.end) for s in parsed.segments] == [
        ("seg_0", "agent", "Hello there.", 0.2, 1.4), ("seg_1", "A", "Hi.", 2.0, 3.0),
        ("seg_2", "agent", "Bye.", 4.0, 5.0)]
    assert parsed.text == "Hello there. Hi. Bye." and parsed.duration == 5.5
    assert parsed.task == "transcribe" and parsed.usage is not None
    assert {s.type for s in parsed.segments} == {"transcript.text.segment"}


def test_a_final_without_its_speaker_fails_a_diarized_answer() -> None:
    openai_speakers.check_labelled(SPLIT)
    with pytest.raises(openai_speakers.RequestError) as failed:
        openai_speakers.check_labelled(Final(utterance=0, start=0, end=1, text="Hi."))
    assert failed.value.status == 500
