"""Word-exact streaming on run-on and long speech: a word spoken is in exactly one final.

Real model, real speech, the real server, measured against the one yardstick
(rtasr.eval.yardstick): what streaming loses beyond it is the server's loss.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from websockets.asyncio.client import connect

from rtasr import client
from rtasr.engine import Engine
from rtasr.eval import yardstick
from rtasr.eval.wer import joined_wer, normalize, score_stream
from rtasr.server import Server

from .helpers import TRANSCRIPTS, encode, silence, trimmed

pytestmark = pytest.mark.e2e

RATE = 16000
RUN_ON = [
    "agent-alreadyon", "conf-waitforleader", "cannot-complete-as-dialed", "auth-incorrect",
    "tt-weasels", "confbridge-invalid", "priv-introsaved", "vm-nobodyavail", "conf-invalidpin",
    "transfer", "vm-mismatch", "something-terribly-wrong", "vm-tempgreetactive", "agent-pass",
    "conf-noempty", "pbx-invalid", "conf-onlyperson", "demo-echodone", "privacy-unident",
    "vm-rec-name",
]


def lay_out(names: list[str], gaps_s: tuple[float, float],
            seed: int = 7) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Clips end to end with gaps uniform in `gaps_s`: the audio and (text, start, end) each."""
    rng = random.Random(seed)
    parts, spans, t = [silence(0.5, RATE)], [], 0.5
    for name in names:
        clip = trimmed(name)
        spans.append((TRANSCRIPTS[name], t, t + len(clip) / RATE))
        gap = silence(rng.uniform(*gaps_s), RATE)
        parts += [clip, gap]
        t += (len(clip) + len(gap)) / RATE
    parts.append(silence(1.0, RATE))
    return np.concatenate(parts), spans


def decoded_alone(engine: Engine, server: Server, audio: np.ndarray,
                  spans: list[tuple[str, float, float]]) -> list[str]:
    """The yardstick: each utterance decoded whole with the margins a final gets."""
    refs = [yardstick.Reference(*span) for span in spans]
    return yardstick.decode(engine, audio, refs, server.config, language="en")


async def test_run_on_speech_gets_finals_as_it_goes_and_loses_no_word_at_a_cut(
        server: Server, engine: Engine) -> None:
    audio, spans = lay_out(RUN_ON, (0.1, 0.25))
    assert len(audio) / RATE >= 60
    speed = 1.5
    rec = await client.stream(server.url, encode(audio), speed=speed)
    finals = rec.of("final")
    sent_s = len(audio) / RATE / speed
    early = [r for r in rec.messages if r.msg["type"] == "final" and r.at < sent_s - 1.0]
    assert len(early) >= 5, "run-on speech must be finalized while it goes on"
    alone = decoded_alone(engine, server, audio, spans)
    score = score_stream(spans, finals, alone)
    assert score.cuts >= 5
    assert (score.lost, score.doubled) == (0, 0), score
    # within 3 of its 178 words of the yardstick: two runs of one build can differ by that
    # much (which decode serves as a final depends on timing)
    assert score.wer <= joined_wer([s[0] for s in spans], alone) + 0.02, score


async def test_a_long_utterance_is_cut_without_losing_a_word(server: Server,
                                                             engine: Engine) -> None:
    audio, spans = lay_out(["conf-usermenu-162"], (0.5, 0.5))
    assert spans[0][2] - spans[0][1] > 15
    rec = await client.stream(server.url, encode(audio), speed=2.0)
    finals = rec.of("final")
    alone = decoded_alone(engine, server, audio, spans)
    score = score_stream(spans, finals, alone)
    assert len(finals) >= 2 and score.cuts >= 1
    assert (score.lost, score.doubled) == (0, 0), score
    assert score.wer <= joined_wer([s[0] for s in spans], alone) + 0.05, score


async def test_flush_in_the_middle_of_speech_puts_no_word_in_two_finals(server: Server) -> None:
    speech = trimmed("agent-alreadyon")
    half = int(1.6 * RATE)  # inside "agent is already"
    frames: list[bytes | str] = [encode(silence(0.5, RATE)), encode(speech[:half]),
                                 json.dumps({"type": "flush"}), encode(speech[half:]),
                                 encode(silence(1.0, RATE)), json.dumps({"type": "end"})]
    finals = []
    async with connect(f"{server.url}?sample_rate={RATE}") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames:
            await ws.send(frame)
        async for text in ws:
            msg = json.loads(text)
            finals += [msg] if msg["type"] == "final" else []
    assert len(finals) == 2
    first, second = (normalize(f["text"]) for f in finals)
    assert finals[1]["start"] >= finals[0]["end"]
    reference = normalize(TRANSCRIPTS["agent-alreadyon"])
    # every word once, in order: only the word the flush cut through may be misheard
    assert len(first) + len(second) == len(reference), (first, second)
    assert first[:-1] == reference[: len(first) - 1], first
    assert second == reference[len(first) :], second
