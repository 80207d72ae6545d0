"""Prometheus metrics (metrics.py), fed the way the engine's observers feed them."""

from __future__ import annotations

from rtasr.core.engine_api import Priority
from rtasr.server.metrics import Metrics


def sample(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith(name + " ") or line.startswith(name + "{"))


def test_a_batch_counts_once_per_call_and_its_cost_once_per_request() -> None:
    metrics = Metrics()
    metrics._decoded(Priority.FINAL, 0.8, 4)
    text = metrics.render().decode()
    assert sample(text, "rtasr_decode_seconds_count") == 1
    assert sample(text, "rtasr_decode_item_seconds_count") == 4
    assert sample(text, "rtasr_decode_item_seconds_sum") == 0.8
