"""TLS: --certfile/--keyfile serve wss:// and https:// on the same port."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.errors import ConfigError
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import TRANSCRIPTS, clip_at, encode, silence

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
async def tls_server(engine: Engine, cert: tuple[Path, Path]) -> AsyncIterator[Server]:
    config = Config(host="127.0.0.1", port=0, certfile=str(cert[0]), keyfile=str(cert[1]))
    async with Server(config, engine) as server:
        yield server


async def test_wss_and_https(tls_server: Server, cert: tuple[Path, Path]) -> None:
    from websockets.asyncio.client import connect

    assert tls_server.url.startswith("wss://")
    trust = ssl.create_default_context(cafile=str(cert[0]))
    audio = np.concatenate([silence(0.3, 16000), clip_at("tt-weasels", 16000),
                            silence(0.8, 16000)])
    async with connect(tls_server.url, ssl=trust) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(encode(audio))
        await ws.send(json.dumps({"type": "end"}))
        finals = [m for m in map(json.loads, [t async for t in ws]) if m["type"] == "final"]
    assert wer(TRANSCRIPTS["tt-weasels"], finals[0]["text"]) <= 0.2

    def get(path: str) -> tuple[int, bytes]:
        url = f"https://127.0.0.1:{tls_server.port}{path}"
        with urllib.request.urlopen(url, context=trust, timeout=5) as r:
            return r.status, r.read()

    status, body = await asyncio.to_thread(get, "/healthz")
    assert status == 200 and json.loads(body)["ready"] is True
    status, body = await asyncio.to_thread(get, "/")
    assert status == 200 and b"app.js" in body


async def test_a_bad_certificate_is_a_config_error(engine: Engine, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="certfile"):
        await Server(Config(host="127.0.0.1", port=0, certfile=str(junk),
                            keyfile=str(junk)), engine).start()
