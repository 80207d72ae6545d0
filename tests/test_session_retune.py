"""`Session.retune`: new settings mid-stream (OpenAI's `session.update`) apply to what
follows, and nothing already taken is lost or decoded again."""

from __future__ import annotations

import dataclasses

import numpy as np

from rtasr.config import Config
from rtasr.core.protocol import Final, SpeechStart, StreamParams

from .helpers import clip_at, encode, silence
from .test_session import NO_CUTS, Driver

SPEECH = clip_at("conf-noempty", 16000)


def test_a_new_prompt_and_language_reach_the_decodes_asked_for_after_it() -> None:
    d = Driver(NO_CUTS)
    d.feed(np.concatenate([silence(0.3, 16000), SPEECH[: len(SPEECH) // 2]]))
    before = list(d.jobs)
    assert before and all(j.request.initial_prompt is None for j in before)
    taken = d.session.duration_s
    params = StreamParams(language="de", prompt="Konferenz")
    assert d.session.retune(NO_CUTS, params) == []  # nothing decoded again
    assert d.session.duration_s == taken
    d.answer(d.pop("partial"), "No empty")
    d.feed(np.concatenate([SPEECH[len(SPEECH) // 2 :], silence(1.0, 16000)]))
    after = [j for j in d.jobs if j not in before]
    assert after and all(j.request.initial_prompt == "Konferenz" and j.request.language == "de"
                         for j in after)
    assert len(d.of(SpeechStart)) == 1  # the same utterance goes on


def test_endpoint_silence_applies_from_the_next_frame() -> None:
    d = Driver(NO_CUTS, interim=False)
    d.feed(np.concatenate([silence(0.3, 16000), SPEECH, silence(0.3, 16000)]))
    manual = dataclasses.replace(NO_CUTS, endpoint_silence_ms=3_600_000)
    d.session.retune(manual, StreamParams(interim_results=False))
    d.feed(silence(2.0, 16000))  # the old 500 ms endpoint would have ended it
    assert d.session.segmenter.open_utterance is not None
    d.session.retune(NO_CUTS, StreamParams(interim_results=False))
    d.feed(silence(0.1, 16000))
    assert d.session.segmenter.open_utterance is None
    d.answer(d.jobs[-1], "No empty conferences currently exist.")
    assert [f.text for f in d.of(Final)] == ["No empty conferences currently exist."]


def test_a_new_audio_rate_applies_to_the_frames_after_it() -> None:
    d = Driver(Config(beam_size=1))
    d.take(d.session.feed(encode(silence(0.5, 16000))))
    d.session.retune(Config(beam_size=1).resolved(gpus=0, cpus=2), StreamParams(sample_rate=8000))
    d.take(d.session.feed(encode(clip_at("conf-noempty", 8000))))
    assert abs(d.session.duration_s - (0.5 + len(SPEECH) / 16000)) < 0.01
    d.take(d.session.end())  # the resampler's last samples
    assert abs(d.session.segmenter.position / 16000 - d.session.duration_s) < 0.01
    assert d.of(SpeechStart)  # 8 kHz decoded as 8 kHz: speech at its own speed
