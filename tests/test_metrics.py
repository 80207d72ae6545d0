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


def test_label_values_come_from_the_code_never_from_a_client() -> None:
    """A metric label per client value (a path, a language, a param) would grow without bound:
    every `.labels(...)` in rtasr takes a literal, an error class's `code` or a priority name."""
    import ast
    from pathlib import Path

    import rtasr

    allowed_names = {"kind"}  # Priority.name.lower(): a closed enum
    root = Path(rtasr.__file__).parent
    calls = [(path, node) for path in root.rglob("*.py")
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "labels"]
    assert len(calls) >= 8
    for path, call in calls:
        for arg in call.args:
            ok = ((isinstance(arg, ast.Constant) and isinstance(arg.value, str))
                  or (isinstance(arg, ast.Name) and arg.id in allowed_names)
                  or (isinstance(arg, ast.Attribute) and arg.attr == "code"))
            assert ok, f"{path.name}:{call.lineno}: label value {ast.unparse(arg)}"
    # `code` is a class attribute: no error sets its own from what a client sent
    for path in root.rglob("*.py"):
        assert ".code = " not in path.read_text(), path
