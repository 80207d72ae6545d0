"""benchmarks/gpu_check.sh runs only on a lent GPU machine, where a broken command costs device
time that cannot be had back: every option it hands a benchmark or `rtasr serve` must exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# what gpu_check.sh runs that takes rtasr's or its benchmarks' options
PYTHON_RUNS = ("benchmarks/", "$e ", '"${e[@]}"', "load ")


def _commands(script: str) -> list[str]:
    """The script's commands that run a benchmark (or its `load` sweep), continuation lines
    joined; py-spy's own options left out."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines()
            if not line.lstrip().startswith("#") and "py-spy" not in line
            and any(marker in line for marker in PYTHON_RUNS)
            and ".gpu/" not in line]


def _help_options(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return set(OPTION.findall(out))


@pytest.fixture(scope="module")
def known() -> set[str]:
    return (_help_options("benchmarks/load_bench.py")
            | _help_options("benchmarks/engine_bench.py")
            | _help_options("benchmarks/model_speed.py")
            | _help_options("benchmarks/random_whisper.py")
            | _help_options("-m", "rtasr", "serve"))


def test_the_commands_are_found() -> None:
    commands = _commands(SCRIPT.read_text())
    assert any("load_bench.py" in c for c in commands)
    assert any(c.startswith("load tiny_batched") for c in commands)
    assert any("engine_bench.py batch" in c for c in commands)


def test_every_option_gpu_check_passes_exists(known: set[str]) -> None:
    used = {(option, command[:60]) for command in _commands(SCRIPT.read_text())
            for option in OPTION.findall(command)}
    unknown = sorted({(option, where) for option, where in used if option not in known})
    assert not unknown, f"options no benchmark or `rtasr serve` knows: {unknown}"


def test_gpu_pack_carries_every_dependency_the_gpu_image_lacks() -> None:
    """The GPU machine has no network: rtasr's base dependencies travel in gpu_pack.sh's
    folders, except those its image has (numpy; faster-whisper's onnxruntime and tokenizers)."""
    import tomllib

    pack = (ROOT / "benchmarks" / "gpu_pack.sh").read_text().replace("_", "-").lower()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in deps}
    missing = sorted(name for name in names - {"numpy"} if name not in pack)
    assert not missing, f"gpu_pack.sh does not carry {missing}"
