"""The yardstick (rtasr.eval.yardstick): each utterance decoded whole with the margins the server
gives a final, scored by one alignment of the joined text."""

from __future__ import annotations

import numpy as np

from rtasr.config import Config
from rtasr.core.protocol import Task
from rtasr.eval import yardstick
from rtasr.eval.wer import errors_by_reference, joined_wer
from rtasr.eval.yardstick import Reference

RATE = 16000


class Recorder:
    """A decoder that keeps the audio it was given."""

    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []

    def transcribe_whole(self, audio: np.ndarray, *, language: str | None,
                         task: Task = "transcribe", beam_size: int = 5) -> str:
        assert (language, task, beam_size) == ("en", "transcribe", 5)
        self.audio.append(audio)
        return ""


def test_each_utterance_gets_the_servers_preroll_and_pause_as_margins() -> None:
    config = Config(preroll_ms=300, pause_ms=150)
    stream = np.arange(20 * RATE, dtype=np.float32)  # each sample holds its own index
    refs = [Reference("a", 1.0, 3.0), Reference("b", 6.0, 8.5)]
    decoder = Recorder()
    yardstick.decode(decoder, stream, refs, config, language="en")
    first, second = decoder.audio
    assert (first[0], first[-1] + 1) == (0.7 * RATE, 3.15 * RATE)
    assert (second[0], second[-1] + 1) == (5.7 * RATE, 8.65 * RATE)
    # the server's margins, whatever they are set to
    wide = Config(preroll_ms=500, pause_ms=400)
    assert yardstick.spans(refs, wide, len(stream))[0] == (0.5 * RATE, 3.4 * RATE)


def test_margins_stop_halfway_to_a_neighbour_and_at_the_streams_ends() -> None:
    config = Config(preroll_ms=300, pause_ms=150)
    refs = [Reference("a", 0.1, 2.0), Reference("b", 2.2, 4.0), Reference("c", 4.05, 5.0)]
    assert yardstick.spans(refs, config, int(5.1 * RATE)) == [
        (0, int(2.1 * RATE)),  # the stream starts 0.1 s before; 0.2 s gap: 0.1 s each side
        (int(2.1 * RATE), int(4.025 * RATE)),
        (int(4.025 * RATE), int(5.1 * RATE)),  # 150 ms after, but the stream ends first
    ]


def test_joined_scoring_charges_nothing_for_a_word_that_moved_to_the_next_utterance() -> None:
    refs = ["please hold the line", "your call is important"]
    moved = ["please hold the", "line your call is important"]
    assert joined_wer(refs, moved) == 0.0
    wrong = ["please hold a line", "your call important"]
    assert joined_wer(refs, wrong) == 2 / 8
    assert errors_by_reference(refs, wrong) == [1, 1]
    assert errors_by_reference(refs, ["please hold the line extra words", "your call is important"]
                               ) == [2, 0]
