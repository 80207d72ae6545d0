"""The one subtitles renderer (rtasr/core/subtitles.py): exact SRT, WebVTT and text files."""

from __future__ import annotations

from rtasr.core import subtitles
from rtasr.core.protocol import Final

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
