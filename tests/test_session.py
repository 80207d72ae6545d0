"""Session policy with scripted transcripts: no model, no socket."""

from __future__ import annotations

import itertools

import numpy as np

from rtasr.config import Config
from rtasr.decoding import Transcript, Word
from rtasr.errors import EngineError
from rtasr.protocol import Error, Final, Partial, SpeechStart, StreamParams
from rtasr.session import Action, Cancel, DecodeJob, Session

from .helpers import clip_at, encode, silence


class Driver:
    def __init__(self, config: Config | None = None, interim: bool = True) -> None:
        self.session = Session(config or Config(beam_size=1), StreamParams(interim_results=interim),
                               "test", "en")
        self.jobs: list[DecodeJob] = []
        self.messages: list[object] = []
        self.cancelled: list[DecodeJob] = []

    def take(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Cancel):
                if a.job in self.jobs:
                    self.jobs.remove(a.job)
                self.cancelled.append(a.job)
            else:
                (self.jobs if isinstance(a, DecodeJob) else self.messages).append(a)

    def feed(self, audio: np.ndarray, chunk: int = 1600) -> None:
        data = encode(audio)
        for i in range(0, len(data), chunk * 2):
            self.take(self.session.feed(data[i : i + chunk * 2]))

    def pop(self, kind: str) -> DecodeJob:
        job = next(j for j in self.jobs if j.kind == kind)
        self.jobs.remove(job)
        return job

    def answer(self, job: DecodeJob, text: str, words: tuple[Word, ...] = ()) -> None:
        self.take(self.session.on_result(job, Transcript(text=text, words=words, language="en")))

    def of(self, cls: type) -> list:
        return [m for m in self.messages if isinstance(m, cls)]


SPEECH = clip_at("agent-alreadyon", 16000)


def test_committed_grows_by_local_agreement_and_never_shrinks() -> None:
    d = Driver()
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:40000]]))
    hyps = ["That agent", "That agent is all", "That agent is already logged",
            "That agent was already logged on", "That agent is already logged on please"]
    for text in hyps:
        d.answer(d.pop("partial"), text)
        d.feed(SPEECH[32000:40000])  # more speech: the next partial is due
    partials = d.of(Partial)
    assert [p.committed for p in partials] == [
        "", "That agent", "That agent is", "That agent is", "That agent is already logged on"]
    for p in partials:
        assert p.text.startswith(p.committed)
    # the fourth hypothesis disagreed with a committed word: the committed words are kept
    assert partials[3].text == "That agent is already logged on"


def test_candidate_at_the_pause_becomes_the_final() -> None:
    d = Driver(interim=False)
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(0.25, 16000)]))
    assert [j.kind for j in d.jobs] == ["candidate"]
    cand = d.pop("candidate")
    d.answer(cand, "Weasels have eaten our phone system.")
    assert not d.of(Final)  # not an endpoint yet
    d.feed(silence(0.5, 16000))
    assert d.jobs == []  # no second decode: the candidate is the final
    (final,) = d.of(Final)
    assert final.text == "Weasels have eaten our phone system."
    assert final.end == round(cand.end / 16000, 3)


def test_finals_are_delivered_in_utterance_order() -> None:
    d = Driver(interim=False)
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(1, 16000), clip, silence(1, 16000)]))
    first, second = d.pop("candidate"), d.pop("candidate")
    d.answer(second, "second")
    assert d.of(Final) == []
    d.answer(first, "first")
    assert [f.text for f in d.of(Final)] == ["first", "second"]
    assert [f.utterance for f in d.of(Final)] == [0, 1]


def test_an_engine_failure_costs_one_final_not_the_session() -> None:
    d = Driver(interim=False)
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(1, 16000), clip, silence(1, 16000)]))
    first, second = d.pop("candidate"), d.pop("candidate")
    d.take(d.session.on_failure(first, EngineError("boom")))
    d.answer(second, "second")
    assert [e.code for e in d.of(Error)] == ["engine_error"]
    assert [f.text for f in d.of(Final)] == ["second"]


def test_empty_transcript_gives_no_final() -> None:
    d = Driver(interim=False)
    d.feed(np.concatenate([silence(0.5, 16000), clip_at("tt-weasels", 16000), silence(1, 16000)]))
    d.answer(d.pop("candidate"), "")
    assert d.of(Final) == [] and not d.session.awaiting_finals


def test_run_on_speech_is_cut_after_committed_words() -> None:
    config = Config(beam_size=1, commit_cut_s=3.0)
    d = Driver(config)
    long = np.tile(SPEECH[np.abs(SPEECH) > 0][:16000], 6)  # 6 s without a pause
    d.feed(np.concatenate([silence(0.3, 16000), long[:16000 * 2]]))
    for text in ["one two three four", "one two three four five"]:
        d.answer(d.pop("partial"), text)
        d.feed(long[:8000])
    d.feed(long[:16000])
    cut = d.pop("cut")
    words = tuple(Word(word=f" w{i}", start=i * 0.5, end=i * 0.5 + 0.4, probability=0.9)
                  for i in range(6))
    d.answer(cut, " ".join(w.word for w in words), words)
    (final,) = d.of(Final)
    starts = d.of(SpeechStart)
    assert [s.utterance for s in starts] == [0, 1]
    audio_s = (cut.end - cut.start) / 16000
    kept = [w for w in words if w.end <= audio_s - 1.0][:4]  # committed: four words
    assert final.text == "".join(w.word for w in kept).strip()
    assert starts[1].start == final.end  # the next utterance begins where the final ends


def test_a_pause_supersedes_the_partial_in_flight() -> None:
    """Under load a partial can sit in the engine's queue: the final must not wait for it."""
    d = Driver()
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:24000]]))
    partial = d.pop("partial")  # in flight, not answered yet
    d.feed(silence(0.3, 16000))  # the pause: the speculative final starts now
    assert d.cancelled == [partial]
    candidate = d.pop("candidate")
    d.feed(silence(0.5, 16000))  # the endpoint
    d.answer(candidate, "That agent is already")
    assert [f.text for f in d.of(Final)] == ["That agent is already"]
    assert d.jobs == []


def test_partials_come_less_often_under_load() -> None:
    def partial_ends(backoff: float) -> list[float]:
        d = Driver()
        d.session.partial_backoff = backoff
        d.feed(silence(0.5, 16000))
        ends = []
        for i in range(0, 64000, 1600):  # 4 s of speech, 100 ms at a time
            d.feed(SPEECH[i % len(SPEECH) : i % len(SPEECH) + 1600])
            for job in [j for j in d.jobs if j.kind == "partial"]:
                ends.append(job.end / 16000)
                d.answer(d.pop("partial"), "That agent")
        return ends

    normal, loaded = partial_ends(1.0), partial_ends(2.0)
    assert len(normal) >= 6 and len(loaded) <= len(normal) // 2 + 1
    assert min(b - a for a, b in itertools.pairwise(loaded)) >= 0.95
