"""Speakers in OpenAI's file transcription API (`POST /v1/audio/transcriptions`).

`response_format=diarized_json` answers as OpenAI's `gpt-4o-transcribe-diarize` does: `text`,
`segments` of type `transcript.text.segment` (`id`, `start`, `end`, `text`, `speaker`),
`duration`, `task` and `usage`; with `stream=true`, each segment's `transcript.text.delta`
(with its `segment_id`) and `transcript.text.segment` events, then `transcript.text.done`.
rtasr's own `diarize=true` field labels `text`, `srt` and `vtt` as `rtasr transcribe
--diarize` does (core/subtitles.py). Either needs a server started with `--diarize`.

`known_speaker_names[]` with `known_speaker_references[]` (base64 data URLs of 2-10 s clips,
at most 4; bounded in core/limits.py) name voices: each clip is decoded and embedded before
the file is, and enrolled in the session's speaker tracker as speakers 0, 1, ... A segment
near one of them carries its name; other speakers are `A`, `B`, ... in diarized_json (as
OpenAI labels them) and `Speaker 1`, `Speaker 2`, ... in text, srt and vtt.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...config import SAMPLE_RATE_HZ
from ...core import limits, subtitles
from ...core.protocol import Final
from ...core.speaker_finals import speech_audio
from ...errors import ParameterError
from ..interfaces import Embed
from .uploads import RequestError, decode

NAMES_FIELD = "known_speaker_names[]"
REFERENCES_FIELD = "known_speaker_references[]"
PLAIN_FORMATS = ("json", "verbose_json")  # no place for a label


@dataclass(frozen=True)
class Speakers:
    """What one request asks of speakers: the known ones' names and reference clips."""

    names: tuple[str, ...] = ()
    clips: tuple[bytes, ...] = ()

    def label(self, speaker: int) -> str:
        """diarized_json's label: a known speaker's name, else A, B, ... (OpenAI's)."""
        if speaker < len(self.names):
            return self.names[speaker]
        return next(itertools.islice(self._letters(), speaker - len(self.names), None))

    def person(self, speaker: int) -> str:
        """text, srt and vtt's label: a known speaker's name, else Speaker 1, Speaker 2, ..."""
        if speaker < len(self.names):
            return self.names[speaker]
        return subtitles.speaker_label(speaker - len(self.names))

    def _letters(self) -> Iterator[str]:
        """A, B, ..., Z, AA, AB, ...: every label no known speaker is called."""
        for size in itertools.count(1):
            for letters in itertools.product(string.ascii_uppercase, repeat=size):
                if "".join(letters) not in self.names:
                    yield "".join(letters)


def parse(fields: dict[str, list[str]], fmt: str, task: str) -> Speakers | None:
    """The request's speakers (None: it asks for none). Raises ParameterError."""
    diarize = fmt == "diarized_json" or limits.flag(fields.get("diarize", [None])[-1],
                                                    "diarize", False)
    names, clips = fields.get(NAMES_FIELD, []), fields.get(REFERENCES_FIELD, [])
    if not diarize:
        if names or clips:
            raise ParameterError(f"{REFERENCES_FIELD} name speakers: they need "
                                 "response_format=diarized_json", param=REFERENCES_FIELD)
        return None
    if task != "transcribe":
        raise ParameterError("speakers are told in transcriptions, not translations",
                             param="response_format")
    if fmt in PLAIN_FORMATS:
        raise ParameterError(f"response_format={fmt} has no place for speakers: ask for "
                             "diarized_json, or text, srt or vtt with diarize=true",
                             param="response_format")
    known = limits.known_speakers(names, clips, NAMES_FIELD, REFERENCES_FIELD)
    return Speakers(tuple(n for n, _ in known), tuple(c for _, c in known))


async def embed_references(speakers: Speakers, embed: Embed) -> list[np.ndarray]:
    """Each reference clip decoded (any format PyAV reads), checked to last 2-10 s, and
    embedded, in order. Raises RequestError (400 for a clip, 500 if embedding fails)."""
    vectors = []
    for clip in speakers.clips:
        try:
            pcm = await asyncio.to_thread(decode, io.BytesIO(clip),
                                          max_s=limits.MAX_REFERENCE_S + 1.0,
                                          param=REFERENCES_FIELD)
        except RequestError as exc:  # too long is the client's clip, not the upload: 400
            raise RequestError(400, str(exc), param=REFERENCES_FIELD) from None
        length_s = len(pcm) / 2 / SAMPLE_RATE_HZ
        if not limits.MIN_REFERENCE_S <= length_s <= limits.MAX_REFERENCE_S:
            raise RequestError(400, f"each of {REFERENCES_FIELD} must last "
                                    f"{limits.MIN_REFERENCE_S:g} to {limits.MAX_REFERENCE_S:g}"
                                    f" s, not {length_s:.1f} s", param=REFERENCES_FIELD)
        audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        try:
            vector = await embed(speech_audio(audio))
        except Exception as exc:
            raise RequestError(500, f"a reference clip could not be embedded "
                                    f"({type(exc).__name__})") from None
        if not (np.all(np.isfinite(vector)) and np.any(vector)):  # the tracker takes none
            raise RequestError(400, f"a clip of {REFERENCES_FIELD} has no voice to tell",
                               param=REFERENCES_FIELD)
        vectors.append(vector)
    return vectors


def check_labelled(final: Final) -> None:
    """Raise RequestError (500) if `final` went out without its speaker (its embedding
    failed): a diarized answer with speakers missing is never given."""
    if any(t.speaker is None for t in subtitles.turns(final)):
        raise RequestError(500, "the speaker of an utterance could not be told: retry the "
                                "request")


def segments(finals: list[Final], speakers: Speakers, first: int = 0) -> list[dict[str, Any]]:
    """diarized_json's segments: a speaker's turn each (core/subtitles.py's `turns`),
    ids `seg_0`, `seg_1`, ... from `first`."""
    out: list[dict[str, Any]] = []
    for final in finals:
        for turn in subtitles.turns(final):
            assert turn.speaker is not None  # check_labelled
            out.append({"type": "transcript.text.segment", "id": f"seg_{first + len(out)}",
                        "start": turn.start, "end": turn.end, "text": turn.text,
                        "speaker": speakers.label(turn.speaker)})
    return out


def diarized_body(finals: list[Final], speakers: Speakers, duration_s: float) -> dict[str, Any]:
    """OpenAI's `TranscriptionDiarized`."""
    return {"task": "transcribe", "duration": duration_s,
            "text": " ".join(f.text.strip() for f in finals),
            "segments": segments(finals, speakers),
            "usage": {"type": "duration", "seconds": duration_s}}


__all__ = ["Speakers", "check_labelled", "diarized_body", "embed_references", "parse",
           "segments"]
