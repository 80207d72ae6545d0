"""Finals as subtitles and text: SRT, WebVTT and a line per final, written cue by cue.

The one renderer of `rtasr transcribe --format` (client.py, as finals arrive), OpenAI's
`response_format=srt|vtt` (server/rest/openai_audio.py) and the web page's downloads
(web/app.js mirrors `stamp` and `cue`). A file is `header(fmt)` and then one `cue` per
final, each cue ending in a blank line (SRT, WebVTT) or a newline (text).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, Protocol

Format = Literal["srt", "vtt", "text"]
FORMATS: tuple[Format, ...] = ("srt", "vtt", "text")


class Timed(Protocol):
    """A final's span and text (core.protocol.Final; the client's JSON finals give the same)."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


def stamp(seconds: float, fmt: Format) -> str:
    """hh:mm:ss,mmm (SRT) or hh:mm:ss.mmm (WebVTT), rounded to the millisecond, halves up."""
    ms = math.floor(seconds * 1000 + 0.5)
    hours, minutes, secs = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
    sep = "," if fmt == "srt" else "."
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms % 1000:03d}"


def header(fmt: Format) -> str:
    """What a file starts with: WebVTT's signature line, else nothing."""
    return "WEBVTT\n\n" if fmt == "vtt" else ""


def cue(number: int, start_s: float, end_s: float, text: str, fmt: Format) -> str:
    """The `number`th final (from 1) as one cue, or one line of text."""
    text = text.strip()
    if fmt == "text":
        return f"{text}\n"
    span = f"{stamp(start_s, fmt)} --> {stamp(end_s, fmt)}"
    return f"{number}\n{span}\n{text}\n\n" if fmt == "srt" else f"{span}\n{text}\n\n"


def render(finals: Iterable[Timed], fmt: Format) -> str:
    """A whole file of `finals`."""
    return header(fmt) + "".join(cue(i, f.start, f.end, f.text, fmt)
                                 for i, f in enumerate(finals, 1))
