"""Streamed finals against the one yardstick (rtasr.eval.yardstick): speech with sentence pauses and
long prompts, real model, real speech, the real server."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest, Priority, Transcript
from rtasr.engine import Engine
from rtasr.eval import yardstick
from rtasr.eval.wer import joined_wer, normalize
from rtasr.eval.yardstick import Reference
from rtasr.server import Server

from .helpers import DATA, TRANSCRIPTS, silence, stream, trimmed

pytestmark = pytest.mark.e2e

RATE = 16000
# Turns of speech: the prompts of a turn are one utterance, with sentence pauses of 0.3-1.0 s
# between them; conf-usermenu-162 and vm-opts are long prompts with their own pauses inside.
TURNS = [
    ["conf-usermenu-162"],
    ["agent-alreadyon", "vm-rec-name", "transfer"],
    ["vm-opts", "auth-incorrect"],
    ["pbx-invalid", "vm-mismatch", "demo-echodone"],
    ["privacy-unident", "priv-introsaved"],
]


FRENCH = [  # fr_CA, base; the first turn long enough to detect the language from
    ["conf-onlyperson", "confbridge-removed"],
    ["privacy-incorrect", "please-try-call-later", "demo-echodone"],
    ["conf-now-recording", "vm-rec-name", "conf-full"],
]
TEXTS = TRANSCRIPTS | json.loads((DATA / "transcripts-multilingual.json").read_text())


def lay_out(turns: list[list[str]], seed: int = 3) -> tuple[np.ndarray, list[Reference]]:
    """Each turn's prompts 0.3-1.0 s apart, 1.5 s between turns: the audio, one Reference a
    turn."""
    rng = random.Random(seed)
    parts, refs, t = [silence(0.5, RATE)], [], 0.5
    for turn in turns:
        start = t
        for k, name in enumerate(turn):
            clip = trimmed(name)
            gap = silence(1.5 if k == len(turn) - 1 else rng.uniform(0.3, 1.0), RATE)
            parts += [clip, gap]
            t += (len(clip) + len(gap)) / RATE
        refs.append(Reference(" ".join(TEXTS[n] for n in turn), start, t - 1.5))
    parts.append(silence(1.0, RATE))
    return np.concatenate(parts), refs


async def test_speech_with_sentence_pauses_streams_within_a_point_of_the_yardstick(
        server: Server, engine: Engine) -> None:
    audio, refs = lay_out(TURNS)
    assert max(r.end - r.start for r in refs) > 15  # a long prompt is cut on its way
    result = await stream(server.url, audio, speed=1.5, timeout_s=120)
    texts = [r.text for r in refs]
    ceiling = joined_wer(texts, yardstick.decode(engine, audio, refs, server.config,
                                                 language="en"))
    streamed = joined_wer(texts, [f["text"] for f in result.of("final")])
    assert streamed <= ceiling + 0.01, (streamed, ceiling, result.text)


async def test_french_with_the_language_detected_streams_within_a_point_of_the_yardstick(
        base_server: Server, base: Engine) -> None:
    audio, refs = lay_out([[f"fr/{name}" for name in turn] for turn in FRENCH])
    result = await stream(base_server.url, audio, speed=1.5, timeout_s=180)  # no language
    finals = result.of("final")
    assert {f["language"] for f in finals} == {"fr"}
    texts = [r.text for r in refs]
    ceiling = joined_wer(texts, yardstick.decode(base, audio, refs, base_server.config,
                                                 language="fr"))
    streamed = joined_wer(texts, [f["text"] for f in finals])
    # Within a point, or one word: the fixture has 52 words (a word is 1.9 points), and a
    # beam-5 final of a piece and the yardstick's beam-5 decode of the whole turn flip a
    # homophone ("dite" / "dites") either way.
    words = sum(len(normalize(text)) for text in texts)
    assert streamed <= ceiling + max(0.01, 1 / words), (streamed, ceiling, result.text)


async def test_while_the_engine_is_behind_finals_hear_the_last_seconds_before_them(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """--busy-context-s on real speech: with the engine behind, a sentence that follows
    another within --context-gap-s is finalized hearing only the last 4 s of it (its partials
    none), and the finals stay within a point of the yardstick, no word of the context said
    twice."""
    monkeypatch.setattr(Engine, "behind", property(lambda self: True))
    heard: list[tuple[Priority, int]] = []
    transcribe = engine.transcribe

    async def spy(request: DecodeRequest) -> Transcript | None:
        heard.append((request.priority, request.context_samples))
        return await transcribe(request)

    monkeypatch.setattr(engine, "transcribe", spy)  # bound by each connection as it opens
    audio, refs = lay_out([TURNS[1], TURNS[3]])
    no_cuts = Config(host="127.0.0.1", port=0, pause_cut_s=20, commit_cut_s=20,
                     max_utterance_s=20)  # every context here is one after a sentence pause
    async with Server(no_cuts, engine) as srv:
        result = await stream(srv.url, audio, speed=1.5, timeout_s=120)
    finals_heard = [n for priority, n in heard if priority is Priority.FINAL and n]
    assert finals_heard and max(finals_heard) <= no_cuts.busy_context_s * RATE, heard
    assert all(n == 0 for priority, n in heard if priority is Priority.PARTIAL), heard
    texts = [r.text for r in refs]
    ceiling = joined_wer(texts, yardstick.decode(engine, audio, refs, srv.config,
                                                 language="en"))
    streamed = joined_wer(texts, [f["text"] for f in result.of("final")])
    assert streamed <= ceiling + 0.01, (streamed, ceiling, result.text)
