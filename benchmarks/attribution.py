"""Where a stream's words go wrong: its errors against the yardstick, split by cause.

For each reference utterance four decodes of the same audio are compared, each scored by one
alignment of the joined texts (rtasr.eval.wer.errors_by_reference):

1. the yardstick: the utterance decoded whole with the server's margins, by faster-whisper's
   file transcription (beam 5, 30 s windows);
2. whole: the same span in one decode as the server decodes a final (its encoder window,
   its beam, one pass): the difference from 1 is the share of the server's decode settings
   (on an utterance longer than the window's 10 s, one pass also drops what the model leaves
   for a next window, which a stream, cut into shorter pieces, does not);
3. pieces: every final's own span (what the server decoded) decoded alone with the server's
   settings: the difference from 2 is the segmentation's share, charged to what split the
   utterance: a run-on cut inside it, an endpoint inside it (a sentence pause taken as the end
   of the utterance), or, where nothing split it, its edges (a final's span that started late,
   ended early, or held a neighbour too);
4. the stream's finals: the difference from 3 is the streaming policy's share (committed
   words kept, a partial or pause decode serving as the final, words stripped after a cut).

With the language detected, the errors of utterances whose finals carry a wrong language
are also counted (inside the shares above).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from corpus import Span

from rtasr.eval.wer import errors_by_reference, normalize

CAUSES = ("decode settings", "cuts", "internal endpoints", "edges", "policy")


def boundaries(span: Span, finals: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(cuts, endpoints) between two finals strictly inside `span`."""
    cuts = endpoints = 0
    for f in finals[:-1]:
        if span.start + 0.05 < f["end"] < span.end - 0.05:
            if f.get("endpoint", True):
                endpoints += 1
            else:
                cuts += 1
    return cuts, endpoints


def attribute(spans: Sequence[Span], finals: Sequence[Mapping[str, Any]], yardstick: list[str],
              whole: list[str], pieces: list[str],
              language: str | None = None) -> dict[str, Any]:
    """Errors per cause (see the module docstring), per turn kind, and in total."""
    refs = [s.text for s in spans]
    e_yard = errors_by_reference(refs, yardstick)
    e_whole = errors_by_reference(refs, whole)
    e_pieces = errors_by_reference(refs, pieces)
    e_stream = errors_by_reference(refs, [f["text"] for f in finals])
    causes = dict.fromkeys(CAUSES, 0)
    kinds: dict[str, dict[str, int]] = {}
    wrong_language = 0
    for k, span in enumerate(spans):
        cuts, endpoints = boundaries(span, finals)
        causes["decode settings"] += e_whole[k] - e_yard[k]
        split = e_pieces[k] - e_whole[k]
        if cuts and endpoints:
            causes["cuts"] += split / 2
            causes["internal endpoints"] += split / 2
        elif cuts:
            causes["cuts"] += split
        elif endpoints:
            causes["internal endpoints"] += split
        else:
            causes["edges"] += split
        causes["policy"] += e_stream[k] - e_pieces[k]
        kind = kinds.setdefault(span.kind or "all", {"words": 0, "stream": 0, "yardstick": 0})
        kind["words"] += len(normalize(span.text))
        kind["stream"] += e_stream[k]
        kind["yardstick"] += e_yard[k]
        if language is not None:
            over = [f for f in finals if f["start"] < span.end and f["end"] > span.start]
            if any(f.get("language") != language for f in over):
                wrong_language += e_stream[k]
    return {"errors": {"yardstick": sum(e_yard), "whole": sum(e_whole),
                       "pieces": sum(e_pieces), "stream": sum(e_stream)},
            "causes": causes, "kinds": kinds, "wrong_language_errors": wrong_language}


def table(result: Mapping[str, Any]) -> str:
    """The causes as a markdown table: errors and share of the gap to the yardstick."""
    gap = result["errors"]["stream"] - result["errors"]["yardstick"]
    rows = ["| cause | errors | share of the gap |", "|---|---|---|"]
    for cause, n in result["causes"].items():
        rows.append(f"| {cause} | {n:+g} | {n / gap:.0%} |" if gap else f"| {cause} | {n:+g} | - |")
    rows.append(f"| **stream - yardstick** | {gap:+d} | |")
    return "\n".join(rows)
