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
from rtasr.core.speaker_finals import SpeakerFinals
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


def test_the_embedding_is_asked_for_when_the_utterance_ends_before_its_final_is_decoded() -> None:
    """The final's speech is known at its endpoint: its embedding runs beside its decode, so a
    final need not wait for it after the decode."""
    d = driver()
    d.feed(np.concatenate([silence(0.5, 16000), CLIP, silence(1, 16000)]))
    (final_job,) = d.jobs  # the candidate decoded at the pause serves as the final
    asked = d.of(EmbedJob)
    assert [j.utterance for j in asked] == [0] and len(asked[0].pieces) == 2
    d.take(d.session.on_embedding(0, VOICE_A))  # back before the decode
    assert d.of(Final) == [] and d.session.awaiting_finals
    d.answer(final_job, "Weasels have eaten our phone system.", WORDS)
    (final,) = d.of(Final)
    assert final.speaker == 0 and [w.speaker for w in final.words] == [0] * 6
    assert len(d.of(EmbedJob)) == 1  # asked once
    assert not d.session.awaiting_finals


def test_an_utterance_without_words_forgets_its_embedding_and_holds_nothing_back() -> None:
    d = driver()
    d.feed(np.concatenate([silence(0.5, 16000), CLIP, silence(1, 16000), CLIP,
                           silence(1, 16000)]))
    first, second = d.jobs
    d.jobs.clear()
    d.answer(first, "")  # nothing heard: no final, and its embedding is not waited for
    d.answer(second, "Weasels have eaten our phone system.", WORDS)
    assert d.of(Final) == []  # utterance 1's own embedding is on its way
    d.take(d.session.on_embedding(1, VOICE_B))
    (final,) = d.of(Final)
    assert (final.utterance, final.speaker) == (1, 0)
    d.take(d.session.on_embedding(0, VOICE_A))  # late, for the utterance without words
    assert len(d.of(Final)) == 1 and not d.session.awaiting_finals


def test_forgotten_embeddings_are_not_held() -> None:
    speakers = SpeakerFinals()
    speakers.embed(0, CLIP)
    speakers.embed(1, CLIP)
    speakers.label(1, VOICE_A)  # back before its final
    assert speakers.held == 2
    speakers.forget(0)
    speakers.forget(1)
    assert speakers.held == 0 and speakers.label(0, VOICE_B) == []
