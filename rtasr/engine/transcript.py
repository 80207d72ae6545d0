"""A decode's segments made rtasr's `Transcript`: the text, and the timed words.

faster-whisper hands back plain dicts (segments with their tokens and, once aligned, their
words); the engine passes them here with its tokenizer's `decode`. Without timestamp tokens
the text is the timed words'; in both modes, copies of a last sentence said again in no time
are dropped (repeats.doubled_tail). No model and no faster-whisper import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.engine_api import Transcript, Word
from .repeats import collapse_phrases, doubled_tail

SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")  # noqa: RUF001
_UNSPACED = {"zh", "ja", "th", "lo", "my", "yue"}  # faster-whisper splits these by unicode


def transcript(segments: list[dict[str, Any]], decode: Callable[[list[int]], str],
               language: str, with_words: bool, from_words: bool = False) -> Transcript:
    """The text, and with `with_words` its timed words; `from_words` (without timestamp
    tokens): the text is the timed words'. Copies of a last sentence that alignment squeezed
    into no time are dropped (repeats.doubled_tail), from the words and the text."""
    timed = [w for s in segments for w in s.get("words", ())]
    if language not in _UNSPACED:
        timed = _join_pieces(timed)
    unsaid = doubled_tail([(w["word"], w["start"], w["end"]) for w in timed], SENTENCE_ENDS)
    if from_words or unsaid:
        timed = timed[: len(timed) - unsaid]
        text = collapse_phrases("".join(w["word"] for w in timed).strip())
    else:
        text = collapse_phrases("".join(decode(s["tokens"]) for s in segments).strip())
    words = tuple(
        Word(word=w["word"], start=round(w["start"], 3), end=round(w["end"], 3),
             probability=round(w["probability"], 3))
        for w in timed
    ) if text and with_words else ()
    return Transcript(text=text, words=words, language=language)


def _join_pieces(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words that do not begin with a space joined to the word before: faster-whisper splits
    an elision ("n'est") into " n" and "'est", and a final's text is its words joined by
    spaces."""
    joined: list[dict[str, Any]] = []
    for w in words:
        if joined and not w["word"][:1].isspace():
            last = joined[-1]
            joined[-1] = dict(last, word=last["word"] + w["word"], end=w["end"],
                              probability=min(last["probability"], w["probability"]))
        else:
            joined.append(w)
    return joined
