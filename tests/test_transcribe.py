"""`rtasr transcribe` as a user runs it: a subprocess streaming real files to the real server."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, silence

NAMES = ["cannot-complete-as-dialed", "tt-weasels"]  # each shorter than a run-on cut
REFERENCE = " ".join(TRANSCRIPTS[n] for n in NAMES)


def two_utterances(rate: int) -> np.ndarray:
    return np.concatenate([silence(0.4, rate), clip_at(NAMES[0], rate), silence(1.0, rate),
                           clip_at(NAMES[1], rate), silence(0.5, rate)])


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("transcribe") / "two.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((two_utterances(8000) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same speech as a 44.1 kHz stereo FLAC, written with PyAV."""
    path = tmp_path_factory.mktemp("transcribe") / "two.flac"
    audio = (two_utterances(44100) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([audio, audio], axis=1).reshape(1, -1),
                                           format="s16", layout="stereo")
        frame.rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


async def run(*args: str | Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtasr", "transcribe", *map(str, args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def cue_times(text: str, sep: str) -> list[float]:
    stamp = rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d{{3}})"
    times = []
    for line in text.splitlines():
        m = re.fullmatch(rf"{stamp} --> {stamp}", line)
        if m:
            g = [int(x) for x in m.groups()]
            times += [g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000,
                      g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000]
    return times


async def test_text_and_json(server: Server, wav: Path, flac: Path) -> None:
    code, out, err = await run(wav, "--url", server.url)
    assert code == 0, err
    assert len(out.splitlines()) == 2 and wer(REFERENCE, out) <= 0.15
    code, out, err = await run(flac, "--url", server.url, "--format", "json")
    assert code == 0, err
    finals = [json.loads(line) for line in out.splitlines()]
    assert [f["type"] for f in finals] == ["final", "final"]
    assert finals[0]["file"] == str(flac) and finals[0]["words"]
    assert wer(REFERENCE, " ".join(f["text"] for f in finals)) <= 0.15


@pytest.mark.parametrize(("fmt", "sep"), [("srt", ","), ("vtt", ".")])
async def test_subtitles_parse_with_increasing_times(server: Server, wav: Path, fmt: str,
                                                     sep: str) -> None:
    code, out, err = await run(wav, "--url", server.url, "--format", fmt)
    assert code == 0, err
    times = cue_times(out, sep)
    assert len(times) == 4 and times == sorted(times) and times[0] < times[1] < times[2]
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    if fmt == "srt":
        assert [b[0] for b in blocks] == ["1", "2"]
        text = " ".join(b[2] for b in blocks)
    else:
        assert blocks[0] == ["WEBVTT"]
        text = " ".join(b[1] for b in blocks[1:])
    assert wer(REFERENCE, text) <= 0.15


async def test_several_files_to_an_output_dir(server: Server, wav: Path, flac: Path,
                                              tmp_path: Path) -> None:
    code, out, err = await run(wav, flac, "--url", server.url, "--format", "vtt",
                               "--output-dir", tmp_path)
    assert code == 0 and out == "", err
    for name in ("two.wav.vtt", "two.flac.vtt"):  # same stem: the full names keep them apart
        vtt = (tmp_path / name).read_text()
        assert vtt.startswith("WEBVTT") and len(cue_times(vtt, ".")) == 4


async def test_realtime_paces_the_stream(server: Server, wav: Path) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    code, out, err = await run(wav, "--url", server.url, "--realtime")
    seconds = len(two_utterances(8000)) / 8000
    assert code == 0 and loop.time() - t0 >= seconds - 0.5, err
    assert wer(REFERENCE, out) <= 0.15


async def test_user_mistakes_are_one_line_errors(server: Server, tmp_path: Path,
                                                 wav: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n" * 100)
    url = ["--url", server.url]
    for args, expected in (
        ([tmp_path / "missing.wav", *url], "no such file"),
        ([text, *url], "notes.txt"),
        ([wav, "--url", "ws://127.0.0.1:9/ws"], "cannot connect"),
        (url, "give one or more audio files"),
    ):
        code, out, err = await run(*args)
        assert code == 2 and out == "", (args, err)
        assert err.startswith("rtasr: error:") and expected in err and err.count("\n") == 1


async def test_the_microphone_loop_leaves_no_task_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--mic` runs for hours: each 100 ms frame must not leave a pending task."""
    import threading
    import types

    from rtasr.client import mic_frames

    class FakeStream:  # sounddevice.RawInputStream, delivering 200 frames from its thread
        def __init__(self, *, callback: Any, **_: Any) -> None:
            self.feed = threading.Thread(
                target=lambda: [callback(b"\0" * 3200, 1600, None, None) for _ in range(200)])

        def __enter__(self) -> FakeStream:
            self.feed.start()
            return self

        def __exit__(self, *exc: object) -> None:
            self.feed.join()

    monkeypatch.setitem(sys.modules, "sounddevice",
                        types.SimpleNamespace(RawInputStream=FakeStream))
    stop = asyncio.Event()
    before = len(asyncio.all_tasks())
    frames = mic_frames(stop)
    async with asyncio.timeout(10):
        for _ in range(150):
            assert len(await anext(frames)) == 3200
    assert len(asyncio.all_tasks()) <= before + 1  # at most one waiter on `stop`
    stop.set()
    await frames.aclose()
    assert len(asyncio.all_tasks()) == before


async def test_a_file_cut_short_by_a_server_shutdown_exits_non_zero(engine: Any,
                                                                     wav: Path) -> None:
    """A server that stops mid-file finalizes what it heard and says `end`: the transcript
    is written, but the file was not all heard, and the exit status says so."""
    from rtasr.config import Config

    stopping = Server(Config(host="127.0.0.1", port=0, shutdown_grace_s=2.0), engine)
    await stopping.start()
    client = asyncio.create_task(run(wav, "--url", stopping.url, "--realtime"))
    try:
        async with asyncio.timeout(30):
            while stopping.session_count == 0:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a second of a six-second file
    finally:
        await stopping.stop()
    code, _, err = await client
    assert code != 0, err
    assert "cut short" in err, err
