"""The one subtitles renderer (rtasr/core/subtitles.py): exact SRT, WebVTT and text files,
without and with speaker labels."""

from __future__ import annotations

import json

from rtasr.core import subtitles
from rtasr.core.protocol import Final, WireWord

FINALS = [Final(utterance=0, start=0.5, end=2.0004, text=" Hello there."),
          Final(utterance=1, start=3661.0005, end=3662.25, text="Bye.")]


def test_srt() -> None:
    assert subtitles.render(FINALS, "srt") == (
        "1\n00:00:00,500 --> 00:00:02,000\nHello there.\n\n"
        "2\n01:01:01,001 --> 01:01:02,250\nBye.\n\n")


def test_vtt() -> None:
    assert subtitles.render(FINALS, "vtt") == (
        "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nHello there.\n\n"
        "01:01:01.001 --> 01:01:02.250\nBye.\n\n")


def test_text_is_a_line_per_final() -> None:
    assert subtitles.render(FINALS, "text") == "Hello there.\nBye.\n"
    assert subtitles.render([], "vtt") == "WEBVTT\n\n"


def test_stamp_rounds_halves_up_as_the_web_page_does() -> None:
    # JavaScript's Math.round, which web/app.js uses, rounds halves up; Python's round() would
    # give 00:00:00.002 for 0.0025 s (to even) where the page gives .003
    assert subtitles.stamp(0.0025, "vtt") == "00:00:00.003"
    assert subtitles.stamp(59.9996, "srt") == "00:01:00,000"


def spoken(text: str, start: float, end: float, speaker: int | None) -> WireWord:
    return WireWord(word=text, start=start, end=end, probability=0.9, speaker=speaker)


# speakers: a final two people spoke in (a change inside one utterance), then the first again
SPOKEN = [Final(utterance=0, start=0.5, end=4.0, text="Hello there. Hi.", speaker=0,
                words=[spoken("Hello", 0.6, 1.0, 0), spoken("there.", 1.0, 1.5, 0),
                       spoken("Hi.", 2.5, 3.0, 1)]),
          Final(utterance=1, start=5.0, end=6.0, text="Bye.", speaker=0,
                words=[spoken("Bye.", 5.1, 5.6, None)])]  # a word without one: the final's


def test_turns_are_runs_of_one_speaker_tiling_the_final() -> None:
    assert subtitles.turns(SPOKEN[0]) == [subtitles.Turn(0.5, 1.5, "Hello there.", 0),
                                          subtitles.Turn(2.5, 4.0, "Hi.", 1)]
    assert subtitles.turns(SPOKEN[1]) == [subtitles.Turn(5.0, 6.0, "Bye.", 0)]
    assert subtitles.turns(FINALS[0]) == [subtitles.Turn(0.5, 2.0004, "Hello there.", None)]


def test_text_with_speakers_is_a_labelled_line_per_turn_counting_from_one() -> None:
    assert subtitles.render(SPOKEN, "text") == (
        "Speaker 1: Hello there.\nSpeaker 2: Hi.\nSpeaker 1: Bye.\n")


def test_srt_with_speakers_is_a_bracketed_cue_per_turn() -> None:
    assert subtitles.render(SPOKEN, "srt") == (
        "1\n00:00:00,500 --> 00:00:01,500\n[Speaker 1] Hello there.\n\n"
        "2\n00:00:02,500 --> 00:00:04,000\n[Speaker 2] Hi.\n\n"
        "3\n00:00:05,000 --> 00:00:06,000\n[Speaker 1] Bye.\n\n")


def test_vtt_with_speakers_is_a_voice_span_per_turn() -> None:
    assert subtitles.render(SPOKEN, "vtt") == (
        "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\n<v Speaker 1>Hello there.\n\n"
        "00:00:02.500 --> 00:00:04.000\n<v Speaker 2>Hi.\n\n"
        "00:00:05.000 --> 00:00:06.000\n<v Speaker 1>Bye.\n\n")


def test_a_clients_json_finals_render_as_the_finals_do() -> None:
    as_json = [json.loads(f.to_json()) for f in [*SPOKEN, *FINALS]]
    for fmt in subtitles.FORMATS:
        assert subtitles.render(as_json, fmt) == subtitles.render([*SPOKEN, *FINALS], fmt)
    assert subtitles.final_cues(7, as_json[1], "text", lambda n: f"#{n}") == ["#0: Bye.\n"]
