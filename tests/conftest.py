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
