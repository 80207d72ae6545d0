"""Prometheus metrics for `GET /metrics` (prometheus-client, one registry per server)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..core.engine_api import Priority
from ..engine.batch_plan import share
from ..engine.engine import Engine

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_ITEM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("rtasr_open_sessions", "Open websocket sessions", registry=r)
        self.audio_seconds = Counter("rtasr_audio_received_seconds",
                                     "Seconds of audio received from clients", registry=r)
        self.utterances = Counter("rtasr_utterances_finalized",
                                  "Finals sent to clients", registry=r)
        self.final_latency = Histogram(
            "rtasr_final_latency_seconds",
            "From receiving an utterance's last audio to sending its final",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.decode_seconds = Histogram(
            "rtasr_decode_seconds", "Time of one model call (a batch)", ["kind"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.decode_item_seconds = Histogram(
            "rtasr_decode_item_seconds",
            "A request's share of its model call: the call's time over the requests in it",
            ["kind"], buckets=_ITEM_BUCKETS, registry=r)
        self.batch_size = Histogram("rtasr_batch_size", "Requests per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.queue_depth = Gauge("rtasr_engine_queue_depth",
                                 "Decode requests waiting for the model", registry=r)
        self.errors = Counter("rtasr_errors", "Errors reported to clients, by code", ["code"],
                              registry=r)
        self.rejected = Counter("rtasr_rejected_connections",
                                "Connections refused before a session opened, by reason",
                                ["reason"], registry=r)

    def watch(self, engine: Engine, sessions: Callable[[], int]) -> None:
        """Read the engine's queue and the session count at scrape time; time its decodes."""
        self.sessions.set_function(sessions)
        self.queue_depth.set_function(lambda: engine.queue_depth)
        engine.observers.append(self._decoded)

    def unwatch(self, engine: Engine) -> None:
        if self._decoded in engine.observers:
            engine.observers.remove(self._decoded)

    def _decoded(self, priority: Priority, seconds: float, batch: int) -> None:
        kind = priority.name.lower()
        self.decode_seconds.labels(kind).observe(seconds)
        item = self.decode_item_seconds.labels(kind)
        for _ in range(batch):
            item.observe(share(seconds, batch))
        self.batch_size.observe(batch)

    def render(self) -> bytes:
        return generate_latest(self.registry)
