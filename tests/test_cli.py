"""`rtasr serve` as a user runs it: real processes, one-line errors for mistakes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect

from rtasr.eval.wer import wer

from .helpers import TRANSCRIPTS, clip_at, encode, finals_sync, silence, wait_listening

RTASR = [sys.executable, "-m", "rtasr"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTASR, *args], capture_output=True, text=True, timeout=120)


def test_help_states_every_default() -> None:
    out = run("serve", "--help").stdout
    for flag in ("--host", "--port", "--device", "--model", "--compute-type", "--beam-size",
                 "--endpoint-silence-ms", "--max-utterance-s", "--vad-aggressiveness"):
        assert flag in out
    assert "(default: 8000)" in out and "(default: 0.0.0.0)" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "cuda"], "sees no CUDA GPU"),
    (["--model", "/nonexistent/model"], "no such directory"),
    (["--model", "tests"], "lacks model.bin and tokenizer.json"),
    (["--port", "70000"], "--port must be"),
    (["--wyoming-port", "70000"], "--wyoming-port must be"),
])
def test_user_mistakes_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = run("serve", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run("serve", "--host", "127.0.0.1", "--port", str(port))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"rtasr: error: port {port} on 127.0.0.1 is already in use")


def test_wyoming_port_in_use_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run("serve", "--host", "127.0.0.1", "--port", "0", "--wyoming-port", str(port))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"rtasr: error: --wyoming-port {port} on 127.0.0.1 is already in use")


def test_serve_transcribes_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*RTASR, "serve", "--host", "127.0.0.1", "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        port = wait_listening(proc)
        finals = finals_sync(port, "tt-weasels")
        assert wer(TRANSCRIPTS["tt-weasels"], finals[0]["text"]) <= 0.2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def test_sigterm_during_speech_still_delivers_the_final() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*RTASR, "serve", "--host", "127.0.0.1", "--port", "0",
                             "--log-format", "json"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        port = wait_listening(proc)
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert json.loads(ws.recv())["type"] == "ready"
            # speech with no pause after it: the utterance is still open at the signal
            ws.send(encode(silence(0.3, 16000)) + encode(clip_at("tt-weasels", 16000)))
            assert json.loads(ws.recv())["type"] == "speech_start"
            proc.send_signal(signal.SIGTERM)
            messages = [json.loads(m) for m in ws]
            code = ws.close_code
        finals = [m for m in messages if m["type"] == "final"]
        assert len(finals) == 1 and wer(TRANSCRIPTS["tt-weasels"], finals[0]["text"]) <= 0.2
        assert messages[-1]["type"] == "end" and code == 1001
        assert proc.wait(30) == 0
        rest = [json.loads(line) for line in proc.stderr.read().splitlines()]
        assert any(r.get("session") and "closed after" in r["message"] for r in rest)
    finally:
        proc.kill()


def test_api_keys_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtasr.cli import build_parser, config_from_args

    monkeypatch.setenv("RTASR_API_KEYS", "env-1, env-2,,")
    args = build_parser().parse_args(["serve", "--api-key", "flag-1", "--api-key", "env-1",
                                      "--allowed-origins", "https://a.example/, https://b"])
    config = config_from_args(args)
    assert config.api_keys == ("flag-1", "env-1", "env-2")
    assert config.allowed_origins == ("https://a.example", "https://b")


def test_options_are_the_config_fields() -> None:
    """The parser is built from Config's fields: no option given is the default Config, and
    each option sets its own field (a value of the field's type that passes validation)."""
    import dataclasses

    from rtasr.cli import build_parser, config_from_args
    from rtasr.config import Config

    assert config_from_args(build_parser().parse_args(["serve"])) == Config()
    changed = {"--port": ("port", 0), "--context-s": ("context_s", 2.5),
               "--device": ("device", "cpu"), "--language": ("language", "de"),
               "--no-no-speech-gate": ("no_speech_gate", False),
               "--cut-context-chars": ("cut_context_chars", 40)}
    for flag, (name, value) in changed.items():
        argv = ["serve", flag] if isinstance(value, bool) else ["serve", flag, str(value)]
        config = config_from_args(build_parser().parse_args(argv))
        assert config == dataclasses.replace(Config(), **{name: value}), flag
