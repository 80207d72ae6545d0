"""Finals as subtitles and text: SRT, WebVTT and a line per final, written cue by cue, with
speaker labels when the finals carry speakers.

The one renderer of `rtasr transcribe --format` (client.py, as finals arrive), OpenAI's
`response_format=text|srt|vtt` (server/rest/openai_audio.py) and the web page's downloads
(web/app.js mirrors `turns`, `stamp`, `cue`, `final_cues` and `render` for text and SRT). A
file is `header(fmt)` and then one `cue` per final, each cue ending in a blank line (SRT,
WebVTT) or a newline (text).

With speakers (diarize=true) a final is cut into `turns`: each run of its words with one
speaker (a word without a speaker of its own has the final's). Each turn is a cue of its own,
labelled `Speaker 1: ...` in text, `[Speaker 1] ...` in SRT and `<v Speaker 1>...` in WebVTT;
the wire's speaker 0 is "Speaker 1" (`speaker_label`). Finals without speakers render exactly
as before: one cue each, no label.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .protocol import Final

Format = Literal["srt", "vtt", "text"]
FORMATS: tuple[Format, ...] = ("srt", "vtt", "text")
Labeller = Callable[[int], str]  # a speaker number to the label people read
FinalLike = Final | Mapping[str, Any]  # a Final, or its JSON as a client receives it


def _get(item: Any, name: str) -> Any:
    """A field of a final or word, whether a dataclass or its JSON (absent: None)."""
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


@dataclass(frozen=True)
class Turn:
    """A final, or a run of its words with one speaker, and that speaker (None: none)."""

    start: float
    end: float
    text: str
    speaker: int | None


def speaker_label(speaker: int) -> str:
    """People count from 1: the wire's speaker 0 is "Speaker 1"."""
    return f"Speaker {speaker + 1}"


def turns(final: FinalLike) -> list[Turn]:
    """`final` cut where its words' speaker changes (a word without one has the final's);
    the first turn starts at the final's start, the last ends at its end. A final whose words
    all have one speaker (or none) is one turn, its own span and text."""
    start, end, own = _get(final, "start"), _get(final, "end"), _get(final, "speaker")
    runs: list[list[Any]] = []  # the words of each run
    speakers: list[int | None] = []
    for word in _get(final, "words") or []:
        speaker = own if _get(word, "speaker") is None else _get(word, "speaker")
        if not speakers or speaker != speakers[-1]:
            runs.append([])
            speakers.append(speaker)
        runs[-1].append(word)
    if len(runs) <= 1:
        return [Turn(start, end, str(_get(final, "text")).strip(),
                     speakers[0] if speakers else own)]
    return [Turn(start if k == 0 else _get(words[0], "start"),
                 end if k == len(runs) - 1 else _get(words[-1], "end"),
                 " ".join(str(_get(w, "word")).strip() for w in words), speaker)
            for k, (words, speaker) in enumerate(zip(runs, speakers, strict=True))]


def stamp(seconds: float, fmt: Format) -> str:
    """hh:mm:ss,mmm (SRT) or hh:mm:ss.mmm (WebVTT), rounded to the millisecond, halves up."""
    ms = math.floor(seconds * 1000 + 0.5)
    hours, minutes, secs = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
    sep = "," if fmt == "srt" else "."
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms % 1000:03d}"


def header(fmt: Format) -> str:
    """What a file starts with: WebVTT's signature line, else nothing."""
    return "WEBVTT\n\n" if fmt == "vtt" else ""


def cue(number: int, start_s: float, end_s: float, text: str, fmt: Format,
        label: str | None = None) -> str:
    """The `number`th cue (from 1), or one line of text; `label` names its speaker."""
    text = text.strip()
    if label is not None:
        text = {"text": f"{label}: {text}", "srt": f"[{label}] {text}",
                "vtt": f"<v {label}>{text}"}[fmt]
    if fmt == "text":
        return f"{text}\n"
    span = f"{stamp(start_s, fmt)} --> {stamp(end_s, fmt)}"
    return f"{number}\n{span}\n{text}\n\n" if fmt == "srt" else f"{span}\n{text}\n\n"


def final_cues(first: int, final: FinalLike, fmt: Format,
               label: Labeller = speaker_label) -> list[str]:
    """`final` as cues numbered from `first`: one, or one per turn when it has speakers."""
    parts = turns(final)
    if len(parts) == 1 and parts[0].speaker is None:  # no speakers: as without diarize
        return [cue(first, parts[0].start, parts[0].end, parts[0].text, fmt)]
    return [cue(first + i, t.start, t.end, t.text, fmt,
                None if t.speaker is None else label(t.speaker))
            for i, t in enumerate(parts)]


def render(finals: Iterable[FinalLike], fmt: Format, label: Labeller = speaker_label) -> str:
    """A whole file of `finals`."""
    cues: list[str] = []
    for final in finals:
        cues += final_cues(len(cues) + 1, final, fmt, label)
    return header(fmt) + "".join(cues)
