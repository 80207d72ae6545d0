"""The file path shared by the REST APIs (rtasr.server.rest.uploads): a failed decode costs one
utterance, not the upload."""

from __future__ import annotations

import numpy as np

from rtasr.config import Config
from rtasr.core.engine_api import Priority, Request, Transcript
from rtasr.core.protocol import StreamParams
from rtasr.engine import Engine
from rtasr.errors import EngineError
from rtasr.eval.wer import wer
from rtasr.server.rest.uploads import FileTranscriber

from .helpers import TRANSCRIPTS, encode, silence, trimmed


class FailingFirstFinals:
    """The real engine, but the first `n` final-priority decodes fail (the model raised)."""

    def __init__(self, engine: Engine, n: int) -> None:
        self.engine, self.left = engine, n

    async def transcribe(self, request: Request) -> Transcript | None:
        if request.priority is Priority.FINAL and self.left > 0:
            self.left -= 1
            raise EngineError("the model failed on this request")
        return await self.engine.transcribe(request)

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)


async def test_a_failed_decode_costs_its_utterance_not_the_whole_file(engine: Engine) -> None:
    files = FileTranscriber(Config().served_with(engine.config), FailingFirstFinals(engine, 2),
                            engine.info)
    pcm = encode(np.concatenate([silence(0.5, 16000), trimmed("agent-alreadyon"),
                                 silence(1.5, 16000), trimmed("vm-nobodyavail"),
                                 silence(1.0, 16000)]))
    finals = [f async for f in files.finals(pcm, StreamParams(language="en",
                                                               interim_results=False))]
    assert finals, "the upload lost every utterance"
    assert wer(TRANSCRIPTS["vm-nobodyavail"], finals[-1].text) <= 0.2, finals
