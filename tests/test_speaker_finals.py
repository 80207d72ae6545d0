"""Speaker labels in the session (diarize=true), with scripted transcripts and synthetic
embeddings: no model, no socket."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.core.actions import EmbedJob
from rtasr.core.engine_api import Word
from rtasr.core.protocol import Final, StreamParams, WireWord
from rtasr.core.session import Session
from rtasr.errors import ParameterError

from .helpers import clip_at, silence, trimmed
from .test_session import Driver

CLIP = clip_at("tt-weasels", 16000)
WORDS = tuple(Word(word=w, start=s, end=e, probability=0.9) for w, s, e in [
    (" Weasels", 0.3, 0.8), (" have", 0.8, 1.0), (" eaten", 1.0, 1.3), (" our", 1.3, 1.5),
    (" phone", 1.5, 1.8), (" system.", 1.8, 2.3)])
VOICE_A = np.eye(192)[0]
VOICE_B = np.eye(192)[1]


def driver(diarize: bool = True) -> Driver:
    d = Driver(Config(beam_size=1, context_s=0), interim=False)  # no context: scripted words
    d.session = Session(d.session.config, StreamParams(interim_results=False, diarize=diarize),
                        "test", "en")
    return d


def two_turns(d: Driver) -> list[EmbedJob]:
    """Two utterances decoded; the embedding jobs they asked for."""
    d.feed(np.concatenate([silence(0.5, 16000), CLIP, silence(1, 16000), CLIP,
                           silence(1, 16000)]))
    while d.jobs:
        d.answer(d.jobs.pop(0), "Weasels have eaten our phone system.", WORDS)
    return [m for m in d.messages if isinstance(m, EmbedJob)]


def test_without_diarize_no_embedding_is_asked_for_and_no_speaker_is_sent() -> None:
    d = driver(diarize=False)
    assert two_turns(d) == []
    finals = d.of(Final)
    assert len(finals) == 2
    data = json.loads(finals[0].to_json())
    assert "speaker" not in data and all("speaker" not in w for w in data["words"])


def test_a_final_waits_for_its_speaker_which_is_on_it_and_on_each_word() -> None:
    d = driver()
    jobs = two_turns(d)
    assert [j.utterance for j in jobs] == [0, 1]
    assert d.of(Final) == [] and d.session.awaiting_finals
    # the embeddings are of the final's speech, without the silence before and after it,
    # in pieces cut at its pause ("Weasels ... have eaten our phone system.")
    speech = len(trimmed("tt-weasels"))
    assert 0.75 * speech <= len(jobs[0].audio) <= speech
    assert len(jobs[0].pieces) == 2 and 0.5 <= len(jobs[0].pieces[0]) / 16000 <= 0.8
    d.take(d.session.on_embedding(0, VOICE_A))
    d.take(d.session.on_embedding(1, VOICE_B))
    first, second = d.of(Final)
    assert (first.speaker, second.speaker) == (0, 1)
    assert {w.speaker for w in second.words} == {1}
    assert not d.session.awaiting_finals
    data = json.loads(second.to_json())
    assert data["speaker"] == 1 and [w["speaker"] for w in data["words"]] == [1] * 6


def test_speakers_are_assigned_in_utterance_order_whatever_order_embeddings_come() -> None:
    d = driver()
    two_turns(d)
    d.take(d.session.on_embedding(1, VOICE_B))  # the later one first: it waits
    assert d.of(Final) == []
    d.take(d.session.on_embedding(0, VOICE_A))
    assert [(f.utterance, f.speaker) for f in d.of(Final)] == [(0, 0), (1, 1)]


def test_a_failed_embedding_sends_the_final_without_a_speaker() -> None:
    d = driver()
    two_turns(d)
    d.take(d.session.on_embedding(0, None))
    d.take(d.session.on_embedding(1, VOICE_B))
    first, second = d.of(Final)
    assert first.speaker is None and first.text == "Weasels have eaten our phone system."
    assert second.speaker == 0  # the first speaker the tracker heard
    assert not d.session.awaiting_finals


def test_the_same_voice_keeps_its_number() -> None:
    d = driver()
    two_turns(d)
    d.take(d.session.on_embedding(0, VOICE_A))
    d.take(d.session.on_embedding(1, VOICE_A + 0.1 * VOICE_B))
    assert [f.speaker for f in d.of(Final)] == [0, 0]


def test_an_embedding_for_an_unknown_utterance_is_ignored() -> None:
    d = driver()
    assert d.session.on_embedding(7, VOICE_A) == []


@pytest.mark.parametrize(("query", "diarize"), [("", False), ("diarize=true", True),
                                                ("diarize=0", False), ("diarize=On", True)])
def test_the_diarize_query_parameter(query: str, diarize: bool) -> None:
    assert StreamParams.from_query(query).diarize is diarize


def test_a_bad_diarize_value_is_refused() -> None:
    with pytest.raises(ParameterError, match="diarize must be true or false"):
        StreamParams.from_query("diarize=maybe")


def test_words_without_a_speaker_serialize_as_before() -> None:
    final = Final(utterance=0, start=0.0, end=1.0, text="hi",
                  words=[WireWord(word="hi", start=0.0, end=1.0, probability=1.0)])
    assert json.loads(final.to_json())["words"] == [
        {"word": "hi", "start": 0.0, "end": 1.0, "probability": 1.0}]


def test_diarize_is_off_by_default_in_the_config() -> None:
    assert Config().diarize is False
