"""Deployment files, checked without a Docker engine: the Dockerfile, compose.yaml and the
Kubernetes manifest parse and say what the docs promise, and the image's own install step,
run in a clean venv, gives a server that starts and transcribes through the image's entry point.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rtasr.eval.wer import wer

from .helpers import TRANSCRIPTS, finals_sync, wait_listening

ROOT = Path(__file__).resolve().parent.parent


def dockerfile() -> tuple[dict[str, str], dict[str, list[tuple[str, str]]], list[str]]:
    """(ARG defaults, instructions per stage, stage order) of the Dockerfile."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    args: dict[str, str] = {}
    stages: dict[str, list[tuple[str, str]]] = {}
    order: list[str] = []
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"#{len(order)}"
            current = stages.setdefault(name, [("FROM", parts[0])])
            order.append(name)
        elif current is not None:
            current.append((op, rest))
    return args, stages, order


def instruction(stage: list[tuple[str, str]], op: str) -> str:
    found = [rest for o, rest in stage if o == op]
    assert found, f"no {op}"
    return found[-1]


def test_dockerfile_gpu_and_cpu_images() -> None:
    args, stages, order = dockerfile()
    assert re.fullmatch(r"nvidia/cuda:12\.[\d.]+-cudnn-runtime-\S+", args["CUDA_IMAGE"])
    assert stages["cuda-base"][0] == ("FROM", "${CUDA_IMAGE}")
    assert stages["gpu"][0] == ("FROM", "cuda-base")
    assert stages["cpu"][0] == ("FROM", "cpu-base")
    assert stages[order[-1]] == [("FROM", "gpu")]  # `docker build .` gives the GPU image
    assert ("ENV", "RTASR_DEVICE=cuda") in stages["gpu"]
    assert ("ENV", "RTASR_DEVICE=cpu") in stages["cpu"]
    assert stages["gpu"][2:] == stages["cpu"][2:]  # the same steps on both bases
    for name in ("gpu", "cpu"):
        stage = stages[name]
        assert instruction(stage, "USER") == "rtasr"  # not root
        assert instruction(stage, "EXPOSE") == "8000"
        assert "/healthz" in instruction(stage, "HEALTHCHECK")
        entry = json.loads(instruction(stage, "ENTRYPOINT"))
        assert entry[:2] == ["sh", "-c"] and entry[2].startswith(
            'exec rtasr serve --device "$RTASR_DEVICE"')
        assert "--port 8000" in entry[2] and '"$@"' in entry[2]  # docker run args pass on
        copied = [rest.split()[0] for op, rest in stage if op == "COPY"]
        assert {"pyproject.toml", "rtasr", "web"} <= set(copied)


def test_compose_reserves_a_gpu_and_a_model_cache() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["rtasr"]
    assert service["build"]["target"] == "gpu"
    assert "8000:8000" in service["ports"]
    device = service["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert any(v.endswith(":/models") for v in service["volumes"]) and "models" in compose[
        "volumes"]


def test_kubernetes_readiness_follows_capacity() -> None:
    deployment, service = yaml.safe_load_all((ROOT / "deploy" / "k8s.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    grace = float(container["args"][container["args"].index("--shutdown-grace-s") + 1])
    assert pod["terminationGracePeriodSeconds"] > grace
    assert service["kind"] == "Service"


@pytest.mark.skipif(os.environ.get("RTASR_SKIP_INSTALL_TEST") == "1",
                    reason="RTASR_SKIP_INSTALL_TEST=1")
def test_image_install_steps_give_a_working_server(tmp_path: Path) -> None:
    _, stages, _ = dockerfile()
    gpu = stages["gpu"]
    # the build context as the image sees it: exactly what the COPY lines copy
    for op, rest in gpu:
        if op == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, tmp_path / source,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, tmp_path / source)
    venv = tmp_path / "venv"
    install = next(rest for op, rest in gpu if op == "RUN" and "pip install" in rest)
    command = install.replace("/opt/venv", str(venv)).replace("python3 ", f"{sys.executable} ")
    subprocess.run(["sh", "-c", command], cwd=tmp_path, check=True, capture_output=True,
                   timeout=900)
    # the wheel carries every module of every sub-package, and the web page
    listing = ("import pathlib, rtasr; p = pathlib.Path(rtasr.__file__).parent; "
               "print('\\n'.join(sorted(str(f.relative_to(p)) for f in p.rglob('*') "
               "if f.is_file() and '__pycache__' not in f.parts)))")
    installed = subprocess.run([venv / "bin" / "python", "-c", listing], cwd="/", check=True,
                               capture_output=True, text=True).stdout.split()
    package = ROOT / "rtasr"
    shipped = {str(f.relative_to(package)) for f in package.rglob("*.py")}
    shipped |= {f"web/{f.name}" for f in (ROOT / "web").iterdir() if f.suffix in
                (".html", ".js", ".css")}
    assert shipped <= set(installed), sorted(shipped - set(installed))

    entry = json.loads(instruction(gpu, "ENTRYPOINT"))
    env = {**os.environ, "RTASR_DEVICE": "cpu", "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    # the image's entry point, with `docker run` arguments appended
    proc = subprocess.Popen([*entry, "--port", "0", "--host", "127.0.0.1"], cwd=tmp_path,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        port = wait_listening(proc)
        finals = finals_sync(port, "tt-weasels")
        assert wer(TRANSCRIPTS["tt-weasels"], finals[0]["text"]) <= 0.2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


# APIs rtasr uses that a Python older than the key lacks (3.11: asyncio.timeout and
# timeout_at, datetime.UTC, subscripting LoggerAdapter at run time).
NEWER_APIS = {(3, 11): ("asyncio.timeout", "datetime.UTC", "LoggerAdapter[")}


def test_the_declared_python_is_one_the_code_runs_on() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = re.fullmatch(r">=(\d+)\.(\d+)", project["project"]["requires-python"])
    assert floor, project["project"]["requires-python"]
    minimum = (int(floor[1]), int(floor[2]))
    assert project["tool"]["ruff"]["target-version"] == f"py{minimum[0]}{minimum[1]}"
    code = "\n".join(p.read_text() for p in (ROOT / "rtasr").rglob("*.py"))
    for version, apis in NEWER_APIS.items():
        used = [api for api in apis if api in code]
        assert not used or minimum >= version, f"{used} need Python {version}, not {minimum}"
