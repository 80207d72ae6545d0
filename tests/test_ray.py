"""rtasr on Ray Serve: a local Ray instance on CPU, the app deployed, real speech streamed
through the Ray ingress websocket."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from websockets.sync.client import connect

from rtasr.wer import wer

from .helpers import TRANSCRIPTS, clip_at, encode, silence

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_url() -> Iterator[str]:
    from rtasr.ray_app import build

    port = free_port()
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=200 * 1024 * 1024,
             log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build({"device": "cpu", "ingress_replicas": 2}), name="rtasr",
                  route_prefix="/")
        yield f"ws://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def transcribe(url: str, name: str, rate: int = 16000) -> list[dict[str, object]]:
    audio = np.concatenate([silence(0.3, rate), clip_at(name, rate), silence(0.8, rate)])
    data = encode(audio)
    with connect(f"{url}/ws?sample_rate={rate}", open_timeout=60) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        step = rate // 5 * 2
        for i in range(0, len(data), step):
            ws.send(data[i : i + step])
        ws.send(json.dumps({"type": "end"}))
        return [json.loads(m) for m in ws]


def test_speech_through_the_ray_ingress(ray_url: str) -> None:
    messages = transcribe(ray_url, "agent-alreadyon")
    text = " ".join(str(m["text"]) for m in messages if m["type"] == "final")
    assert wer(TRANSCRIPTS["agent-alreadyon"], text) <= 0.1
    assert messages[-1]["type"] == "end"


def test_two_ingress_replicas_and_concurrent_sessions(ray_url: str) -> None:
    names = ["tt-weasels", "agent-alreadyon", "conf-onlyperson", "vm-nobodyavail"]
    with ThreadPoolExecutor(len(names)) as pool:
        runs = list(pool.map(lambda n: transcribe(ray_url, n, 8000), names))
    for name, messages in zip(names, runs, strict=True):
        text = " ".join(str(m["text"]) for m in messages if m["type"] == "final")
        assert wer(TRANSCRIPTS[name], text) <= 0.2, (name, text)
    replicas = serve.status().applications["rtasr"].deployments["Ingress"].replica_states
    assert replicas.get("RUNNING") == 2
