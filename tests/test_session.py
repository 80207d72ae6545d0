"""Session policy with scripted transcripts: no model, no socket."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.core.actions import Action, Cancel, DecodeJob
from rtasr.core.engine_api import IDLE, LanguageVotes, Load, Transcript, Word, choose_language
from rtasr.core.protocol import Error, Final, Partial, SpeechEnd, SpeechStart, StreamParams
from rtasr.core.session import Session
from rtasr.errors import EngineError

from .helpers import clip_at, encode, silence


class Driver:
    def __init__(self, config: Config | None = None, interim: bool = True,
                 language: str | None = "en") -> None:
        config = (config or Config(beam_size=1)).resolved(gpus=0, cpus=2)
        self.session = Session(config, StreamParams(interim_results=interim), "test", language)
        self.jobs: list[DecodeJob] = []
        self.messages: list[object] = []
        self.cancelled: list[DecodeJob] = []
        self.load = IDLE  # passed with every frame, as a transport does

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
            self.take(self.session.feed(data[i : i + chunk * 2], self.load))

    def pop(self, kind: str) -> DecodeJob:
        job = next(j for j in self.jobs if j.kind == kind)
        self.jobs.remove(job)
        return job

    def answer(self, job: DecodeJob, text: str, words: tuple[Word, ...] = (),
               language: str = "en", detected: tuple[tuple[str, float], ...] = ()) -> None:
        self.take(self.session.on_result(job, Transcript(text=text, words=words,
                                                         language=language, detected=detected)))

    def of(self, cls: type) -> list:
        return [m for m in self.messages if isinstance(m, cls)]


SPEECH = clip_at("agent-alreadyon", 16000)


NO_CUTS = Config(beam_size=1, pause_cut_s=20, commit_cut_s=20, max_utterance_s=20,
                 commit_holdback_words=0)


def test_committed_grows_by_local_agreement_and_never_shrinks() -> None:
    d = Driver(NO_CUTS)
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:40000]]))
    hyps = ["That agent", "That agent is all", "That agent is already logged",
            "That agent was already logged on", "That agent is already logged on please"]
    for text in hyps:
        d.answer(d.pop("partial"), text)
        d.feed(SPEECH[32000:40000])  # more speech: the next partial is due
    partials = d.of(Partial)
    # The fourth hypothesis says "was" for the committed "is": it is aligned to it, and the
    # words after it that two hypotheses agree on ("already logged") settle.
    assert [p.committed for p in partials] == [
        "", "That agent", "That agent is", "That agent is already logged",
        "That agent is already logged on"]
    for p in partials:
        assert p.text.startswith(p.committed)
    assert partials[3].text == "That agent is already logged on"


def test_candidate_at_the_pause_becomes_the_final() -> None:
    d = Driver(interim=False)
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(0.25, 16000)]))
    assert [j.kind for j in d.jobs] == ["candidate"]
    cand = d.pop("candidate")
    d.answer(cand, "Weasels have eaten our phone system.")
    assert not d.of(Final)  # not an endpoint yet
    assert not d.of(Partial)  # interim_results=false: the candidate is no partial either
    d.feed(silence(0.5, 16000))
    assert d.jobs == []  # no second decode: the candidate is the final
    (final,) = d.of(Final)
    assert final.text == "Weasels have eaten our phone system."
    assert final.end == round(cand.end_sample / 16000, 3)


@pytest.mark.parametrize("spare_beam_size", [1, 5])
def test_a_partial_serves_as_the_final_only_where_finals_are_greedy(spare_beam_size: int) -> None:
    """A greedy partial decoded on the speech and a little of the pause serves as the final
    (no second decode), but not where finals may get a wider beam (--spare-beam-size)."""
    d = Driver(Config(beam_size=1, spare_beam_size=spare_beam_size))
    clip = clip_at("tt-weasels", 16000)
    audio = np.concatenate([silence(0.5, 16000), clip[: len(clip) - 230 * 16],
                            silence(1.0, 16000)])
    asked: dict[DecodeJob, int] = {}  # by the job, not id(job): a freed job's id is reused
    kinds = []
    for i in range(0, len(audio), 160):  # 10 ms at a time; each decode answered 200 ms later
        d.feed(audio[i : i + 160], chunk=160)
        for job in list(d.jobs):
            if i - asked.setdefault(job, i) >= 3200:
                d.jobs.remove(job)
                kinds.append(job.kind)
                d.answer(job, "Weasels have eaten our phone system.")
    assert len(d.of(Final)) == 1
    assert kinds[-1] == ("partial" if spare_beam_size == 1 else "candidate"), kinds


def test_no_partials_without_interim_results_when_speech_resumes_after_a_pause() -> None:
    """A 150-499 ms pause starts a candidate decode; speech goes on, so its result is no
    final, and with interim_results=false it must not be sent as a partial either."""
    d = Driver(NO_CUTS, interim=False)
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(0.3, 16000), clip[:8000]]))
    d.answer(d.pop("candidate"), "Weasels have eaten our phone system.")
    d.feed(np.concatenate([clip[8000:], silence(1.0, 16000)]))
    assert d.of(Partial) == []
    d.answer(d.pop("candidate"), "Weasels have eaten our phone system. Weasels have eaten")
    assert len(d.of(Final)) == 1


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


def test_a_pause_that_ends_the_utterance_says_so_before_its_final() -> None:
    """`speech_end` comes when the pause has lasted the endpoint silence, whether or not the
    final's decode is done: a voice agent can take the turn on it."""
    d = Driver(interim=False)
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(1.0, 16000)]))
    (end,) = d.of(SpeechEnd)
    assert end.utterance == 0 and not d.of(Final)  # the candidate is still decoding
    cand = d.pop("candidate")
    assert end.end == round(cand.end_sample / 16000, 3)
    d.answer(cand, "Weasels have eaten our phone system.")
    (final,) = d.of(Final)
    assert final.endpoint and final.end == end.end
    d.take(d.session.end())
    assert len(d.of(SpeechEnd)) == 1


def test_a_cut_flush_or_stream_end_is_no_speech_end() -> None:
    d = Driver(Config(beam_size=1, pause_cut_s=1.0))
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:32000], silence(0.3, 16000)]))
    d.answer(d.pop("candidate"), "That agent is already logged on.")
    d.feed(SPEECH[:16000])  # a cut at the pause
    d.take(d.session.flush())
    d.feed(SPEECH[:16000])
    d.take(d.session.end())
    assert len(d.of(SpeechStart)) == 3 and d.of(SpeechEnd) == []


def test_speech_resuming_after_a_pause_in_a_long_utterance_is_cut_at_the_pause() -> None:
    d = Driver(Config(beam_size=1, cut_lookahead_s=0, pause_cut_s=1.0))
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:32000], silence(0.3, 16000)]))
    candidate = d.pop("candidate")
    d.feed(SPEECH[:16000])  # speech resumes: no endpoint, but a cut at the pause
    d.answer(candidate, "That agent is already logged on.")
    (final,) = d.of(Final)
    assert final.text == "That agent is already logged on." and not final.endpoint
    assert final.end == candidate.end_sample / 16000
    starts = d.of(SpeechStart)
    assert [s.utterance for s in starts] == [0, 1] and starts[1].start == final.end
    assert not any(j.kind == "final" for j in d.jobs)  # the candidate was the final's decode


def test_a_cut_opens_the_next_utterance_before_it_finals_the_cut_one() -> None:
    """The candidate is decoded before speech resumes, so the cut's final is ready at once;
    still the next utterance's `speech_start` (continues) comes first, so a client knows the
    speaker goes on before it sees the final (openai_realtime.py ends no turn there)."""
    d = Driver(Config(beam_size=1, cut_lookahead_s=0, pause_cut_s=1.0))
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:32000], silence(0.3, 16000)]))
    d.answer(d.pop("candidate"), "That agent is already logged on.")
    d.feed(SPEECH[:16000])
    order = [(type(m).__name__, m.utterance, getattr(m, "continues", None))
             for m in d.messages if isinstance(m, SpeechStart | Final)]
    assert order == [("SpeechStart", 0, False), ("SpeechStart", 1, True), ("Final", 0, None)]


def test_run_on_speech_is_cut_in_its_longest_silent_gap() -> None:
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))  # gaps of 120 ms qualify past 3 s
    piece = SPEECH[8000:24000]
    gaps = [0.1, 0.13, 0.1]  # shorter than the 150 ms pause: no candidate, no pause cut
    parts = [silence(0.5, 16000)]
    for gap in gaps:
        parts += [piece, silence(gap, 16000)]
    d.feed(np.concatenate([*parts, piece]))
    (final_job,) = [j for j in d.jobs if j.kind == "final"]
    gap_start = 0.5 + 2 * len(piece) / 16000 + 0.1  # the 130 ms gap
    assert gap_start - 0.03 <= final_job.end_sample / 16000 <= gap_start + 0.16
    assert d.of(SpeechStart)[1].start == final_job.end_sample / 16000
    # a final inside run-on speech: its wait is the run-on latency, no spare-capacity beam
    assert not final_job.request.spare_ok
    d.feed(silence(1.0, 16000))
    last = max((j for j in d.jobs if j.kind in ("final", "candidate")),
               key=lambda j: j.utterance)  # the last piece, ended by a pause
    assert last.utterance > final_job.utterance and last.request.spare_ok


def _run_on(d: Driver) -> tuple[DecodeJob, int]:
    """Run-on speech cut once: the head's final job, and the cut."""
    piece = SPEECH[8000:24000]
    parts = [silence(0.5, 16000)]
    for gap in [0.1, 0.13, 0.1]:
        parts += [piece, silence(gap, 16000)]
    d.feed(np.concatenate([*parts, piece, piece]))
    head = d.pop("final")
    return head, head.end_sample


def _timed(text: str, step: float = 0.3) -> tuple[Word, ...]:
    return tuple(Word(word=f" {w}", start=i * step, end=(i + 1) * step, probability=0.9)
                 for i, w in enumerate(text.split()))


def test_the_utterance_after_a_cut_hears_the_head_and_leaves_out_its_final_words_by_text(
        ) -> None:
    """--context-s: the next utterance's decodes hear the head's audio, all of it, and the
    words of the head's final are found in their text and left out, whatever their times
    (a word's time near the cut is not exact enough to split on)."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    head, cut = _run_on(d)
    partial = next(j for j in d.jobs if j.kind == "partial" and j.start_sample == cut)
    assert partial.before == cut - head.start_sample  # the head's audio, from where it began
    assert len(partial.request.audio) == partial.before + partial.end_sample - partial.start_sample
    d.answer(head, "That agent is.")
    d.jobs.remove(partial)
    # the context's words spelled otherwise, and timed all wrong: 0.3 s each from 0
    d.answer(partial, "That agent is already logged on",
             _timed("That agent is already logged on"))
    assert d.of(Partial)[-1].text == "already logged on"
    assert partial.by_text


def test_a_decode_may_hear_more_of_the_context_than_the_final_holds() -> None:
    """Words spoken just after a cut and committed before it stay in the head's final (the
    next utterance's audio holds them too); the decode with the context finds the final's
    words past any others."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    head, _cut = _run_on(d)
    d.answer(head, "agent is")  # the final lacks "That", which the decode hears
    partial = d.pop("partial")
    d.answer(partial, "That agent is already logged on",
             _timed("That agent is already logged on"))
    assert d.of(Partial)[-1].text == "already logged on"


def test_the_final_s_last_word_spelled_otherwise_in_the_context_is_left_out() -> None:
    """The head's final ends "... is DGM." and the decode with the context writes "is
    Digium.": the match by text ends before "Digium." (as near as "DGM"), but "Digium." was
    said well inside the context, so it is the final's word again; a word there that the
    final lacks altogether (the final's last word matched exactly) is kept."""
    def decode(final: str) -> str:
        d = Driver(Config(beam_size=1, commit_cut_s=1.0))
        head, _cut = _run_on(d)
        d.answer(head, final)
        partial = d.pop("partial")
        context = partial.before / 16000
        words = [*_timed("That agent is"),
                 Word(word=" Digium.", start=context - 0.6, end=context - 0.3, probability=0.9),
                 *(Word(word=f" {w}", start=context + 0.3 * i, end=context + 0.3 * (i + 1),
                        probability=0.9) for i, w in enumerate(["already", "on."]))]
        d.answer(partial, "That agent is Digium. already on.", tuple(words))
        assert partial.by_text
        return d.of(Partial)[-1].text

    assert decode("That agent is DGM.") == "already on."
    assert decode("That agent is") == "Digium. already on."


def test_before_the_head_final_is_out_the_context_words_go_by_their_times() -> None:
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    _head, _cut = _run_on(d)
    partial = d.pop("partial")
    context = partial.before / 16000
    words = tuple(Word(word=f" {w}", start=t, end=t + 0.3, probability=0.9)
                  for w, t in (("is", context - 0.5), ("already", context + 0.05),
                               ("logged", context + 0.4)))
    d.answer(partial, "is already logged", words)
    assert d.of(Partial)[-1].text == "already logged" and not partial.by_text


def test_an_utterance_soon_after_the_last_hears_it_and_one_after_a_longer_pause_does_not() -> None:
    """--context-gap-s: a sentence after a short pause is heard with the one before (the
    words of its final left out); after a longer pause it is decoded alone."""
    d = Driver(Config(beam_size=1, context_gap_s=1.0))
    speech = SPEECH[8000:24000]
    d.feed(np.concatenate([silence(0.5, 16000), speech, silence(0.8, 16000)]))
    first = d.pop("candidate")
    d.answer(first, "That agent.")
    assert [f.text for f in d.of(Final)] == ["That agent."]
    d.feed(np.concatenate([speech, silence(0.3, 16000)]))
    second = [j for j in d.jobs if j.utterance == 1][-1]
    assert second.before == first.end_sample - first.start_sample
    d.jobs.remove(second)
    d.answer(second, "That agent. Is already on.", _timed("That agent. Is already on."))
    d.feed(silence(2.5, 16000))
    while d.jobs:
        d.answer(d.jobs.pop(0), "Is already on.", _timed("Is already on."))
    d.feed(speech)
    third = [j for j in d.jobs if j.utterance == 2][-1]
    assert third.before == 0  # 2 s after the last one ended
    assert [f.text for f in d.of(Final)][:2] == ["That agent.", "Is already on."]


def test_while_the_engine_is_behind_finals_hear_the_context_s_last_seconds_and_partials_none(
        ) -> None:
    """The whole context after a sentence pause costs a third more per decode. While the
    engine's finals wait (`behind`), an utterance's finals hear only the last
    --busy-context-s of the one before (from a quiet gap) and its partials none; 0: none at
    all. The context after a cut, which keeps a word from being cut in half, stays whole."""
    piece, gap = SPEECH[8000:24000], silence(0.12, 16000)  # a gap under --pause-ms

    def second(load: Load, **options: float) -> tuple[DecodeJob, list[DecodeJob]]:
        """The first utterance's final job, and every job of the one after it."""
        d = Driver(Config(beam_size=1, context_gap_s=1.0, **options))
        d.load = load
        d.feed(np.concatenate([silence(0.5, 16000), piece, gap, piece, gap, piece,
                               silence(0.8, 16000)]))
        first = d.pop("candidate")
        d.answer(first, "That agent. That agent. That agent.")
        d.feed(np.concatenate([piece, silence(0.8, 16000)]))
        return first, [j for j in [*d.jobs, *d.cancelled] if j.utterance == 1]

    first, jobs = second(IDLE)
    whole = first.end_sample - first.start_sample
    assert {j.kind for j in jobs} >= {"partial", "candidate"}
    assert all(j.before == whole for j in jobs)

    _, jobs = second(Load(behind=True), busy_context_s=1.5)
    assert {j.kind for j in jobs} >= {"partial", "candidate"}
    assert all(j.before == 0 for j in jobs if j.kind == "partial")
    finals = [j for j in jobs if j.kind != "partial"]
    assert all(0 < j.before <= 1.5 * 16000 for j in finals)

    _, jobs = second(Load(behind=True), busy_context_s=0)
    assert jobs and all(j.before == 0 for j in jobs)

    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    d.load = Load(behind=True)
    head, cut = _run_on(d)
    partial = next(j for j in d.jobs if j.kind == "partial" and j.start_sample == cut)
    assert partial.before == cut - head.start_sample


def test_the_context_never_widens_the_encoder_window() -> None:
    """The encoder's cost is its window's: a decode hears as much of the context as fits
    in the window with its own audio, from a quiet gap, or none."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0, encoder_window_s=3.0))
    head, cut = _run_on(d)
    first = d.pop("partial")
    assert 0 < first.before < cut - head.start_sample  # not all of the head's 2.5 s fits
    assert len(first.request.audio) <= 3 * 16000
    d.answer(head, "That agent is")
    d.answer(first, "is already", _timed("is already"))
    d.feed(SPEECH[8000:24000])
    later = [j for j in d.jobs if j.start_sample == cut]
    assert later and all(len(j.request.audio) <= 3 * 16000 for j in later)


def _decoded_again_without_the_context(d: Driver, cut: int) -> None:
    """The final of the utterance after `cut` is decoded again hearing its own audio alone,
    and its words go out."""
    again = next(j for j in d.jobs if j.kind == "final" and j.start_sample == cut)
    assert again.before == 0 and len(again.request.audio) == again.end_sample - again.start_sample
    d.answer(again, "already logged on")
    assert d.of(Final)[-1].text == "already logged on"


def test_a_context_final_with_none_of_its_own_words_is_decoded_again_without_it() -> None:
    """Heard with the context, tiny.en sometimes stops at the end of the context's words and
    leaves out the utterance's own last words (seen in replays): where its partials heard
    words of its own, the final is decoded again without the context, not dropped."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    head, cut = _run_on(d)
    d.answer(head, "That agent is")
    partial = d.pop("partial")
    d.answer(partial, "That agent is already", _timed("That agent is already"))
    d.take(d.session.end())
    (final,) = d.jobs  # the partial in flight serves as the final
    d.jobs.remove(final)
    d.answer(final, "That agent is", _timed("That agent is"))
    _decoded_again_without_the_context(d, cut)


def test_a_context_final_is_decoded_again_even_where_no_decode_heard_its_own_words() -> None:
    """Heard after an Italian turn, a Russian reply decodes as the Italian words again and
    nothing more, its partials as its final (base, the four-reader stream): an utterance
    whose every decode with the context heard only the context's words is decoded again
    without it, not lost without a word."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    head, cut = _run_on(d)
    d.answer(head, "That agent is")
    partial = d.pop("partial")
    d.answer(partial, "That agent is", _timed("That agent is"))
    d.take(d.session.end())
    while d.jobs and d.jobs[0].before:
        job = d.jobs.pop(0)
        d.answer(job, "That agent is", _timed("That agent is"))
    _decoded_again_without_the_context(d, cut)


def test_only_partials_that_never_serve_as_finals_may_stop_early() -> None:
    """A partial may be cut short (--partial-max-tokens-per-s) only where its words never
    become a final's: with the spare beam, a final is always a decode of its own; with greedy
    finals and no spare beam, the partial in flight at a pause may serve as the final."""
    for spare, capped in ((5, True), (1, False)):
        d = Driver(Config(beam_size=1, spare_beam_size=spare))
        d.feed(np.concatenate([silence(0.5, 16000), SPEECH]))
        partials = [j for j in d.jobs if j.kind == "partial"]
        assert partials and all(j.request.capped is capped for j in partials), spare
        d.take(d.session.end())
        assert all(not j.request.capped for j in d.jobs if j.kind != "partial")


def test_a_context_decode_that_hears_nothing_is_decoded_again_without_the_context() -> None:
    """Heard with the audio before a cut, tiny.en sometimes writes nothing (seen in replays of
    the mixed benchmark stream): the final must not fall back to the committed words, losing
    the rest of the utterance, but be decoded again without the context."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    head, cut = _run_on(d)
    d.answer(head, "that agent is")
    partial = d.pop("partial")
    assert partial.start_sample == cut and partial.before > 0
    d.answer(partial, "")
    d.take(d.session.end())
    for job in d.jobs:  # from now on without the context
        assert job.start_sample == cut and job.before == 0
        assert len(job.request.audio) == job.end_sample - job.start_sample
    while d.jobs:
        d.answer(d.jobs.pop(0), "already logged on")
    assert d.of(Final)[-1].text == "already logged on"


def test_a_cut_head_hears_the_lookahead_after_the_cut_and_keeps_only_its_words() -> None:
    """--cut-lookahead-s: the head's final waits for that much audio after the cut, hears it,
    and keeps only the words whose middle lies before the cut."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0, cut_lookahead_s=1.0))
    piece = SPEECH[8000:24000]
    parts = [silence(0.5, 16000)]
    for gap in [0.1, 0.13, 0.1]:
        parts += [piece, silence(gap, 16000)]
    audio = np.concatenate([*parts, piece, piece])
    for i in range(0, len(audio), 1600):
        d.feed(audio[i : i + 1600])
        starts = d.of(SpeechStart)
        if len(starts) > 1:  # cut: its head's final waits for the second after the cut
            cut = round(starts[1].start * 16000)
            finals = [j for j in d.jobs if j.kind == "final"]
            position = d.session.segmenter.position
            assert bool(finals) == (position >= cut + 16000), (position, cut)
            if finals:
                break
    head = finals[0]
    assert head.end_sample == cut and head.after == 16000
    assert len(head.request.audio) == cut - head.start_sample + head.after
    assert not [j for j in d.jobs if j.kind == "partial" and j.utterance == head.utterance]
    length = (cut - head.start_sample) / 16000
    words = tuple(Word(word=f" {w}", start=t, end=t + 0.3, probability=0.9)
                  for w, t in (("that", 0.2), ("agent", length - 0.5), ("is", length + 0.1)))
    d.answer(head, "that agent is", words)
    assert d.of(Final)[0].text == "that agent"


def test_a_stream_that_ends_inside_a_lookahead_decodes_the_head_with_what_there_is() -> None:
    d = Driver(Config(beam_size=1, commit_cut_s=1.0, cut_lookahead_s=3.0))
    piece = SPEECH[8000:24000]
    parts = [silence(0.5, 16000)]
    for gap in [0.1, 0.13, 0.1]:
        parts += [piece, silence(gap, 16000)]
    d.feed(np.concatenate(parts))
    assert len(d.of(SpeechStart)) == 2 and not [j for j in d.jobs if j.kind == "final"]
    d.take(d.session.end())
    head, tail = sorted((j for j in d.jobs if j.kind == "final"), key=lambda j: j.utterance)
    assert 0 < head.after == tail.end_sample - head.end_sample < 3 * 16000
    d.answer(head, "that agent")
    d.answer(tail, "is already")
    assert [f.text for f in d.of(Final)] == ["that agent", "is already"]


def test_no_context_with_context_s_0() -> None:
    d = Driver(Config(beam_size=1, commit_cut_s=1.0, context_s=0))
    _, cut = _run_on(d)
    partial = next(j for j in d.jobs if j.kind == "partial" and j.start_sample == cut)
    assert partial.before == 0
    assert len(partial.request.audio) == partial.end_sample - partial.start_sample


def _first_cut(d: Driver, gaps: list[float]) -> tuple[float, float]:
    """Run-on speech: 1 s pieces of speech with `gaps` between, fed 100 ms at a time. The
    utterance's age (s) when its first cut was asked for, and where the cut is (s)."""
    piece = SPEECH[8000:24000]  # no quiet gap of its own
    audio = np.concatenate([silence(0.5, 16000), piece,
                            *(np.concatenate([silence(g, 16000), piece]) for g in gaps)])
    for i in range(0, len(audio), 1600):
        d.feed(audio[i : i + 1600])
        finals = [j for j in d.jobs if j.kind == "final"]
        if finals:
            start = d.of(SpeechStart)[0].start
            return d.session.segmenter.position / 16000 - start, finals[0].end_sample / 16000
    raise AssertionError("no cut")


def test_a_young_utterance_is_cut_at_a_long_gap_not_at_a_breath() -> None:
    """Past commit_cut_s only a gap of 200 ms is a cut point: a 100 ms breath earlier is
    passed over (cutting a sentence there garbles the words either side)."""
    d = Driver(Config(beam_size=1, cut_lookahead_s=0, pause_cut_s=20))
    age, at = _first_cut(d, [0.1, 0.1, 0.1, 0.22, 0.1, 0.1])
    gap_start = 0.5 + 4 * 1.0 + 0.3  # the 220 ms gap, after four pieces and three breaths
    assert gap_start <= at <= gap_start + 0.22
    assert 4.0 < age < 5.5  # once the gap has been heard


@pytest.mark.parametrize(("gap_s", "earliest_s"), [(0.16, 5.0), (0.13, 6.0), (0.1, 7.0)])
def test_an_utterance_takes_shorter_gaps_as_it_grows(gap_s: float, earliest_s: float) -> None:
    """With no long gap, a 150 ms gap is a cut point 1 s past commit_cut_s, 120 ms 2 s past,
    90 ms 3 s past."""
    d = Driver(Config(beam_size=1, pause_cut_s=20))
    age, at = _first_cut(d, [gap_s] * 12)
    assert earliest_s <= age <= earliest_s + 1.2 + gap_s  # the next gap at the latest
    pieces = round((at - 0.5) / (1 + gap_s))  # the cut is in a gap between two pieces
    assert 0 < (at - 0.5) - pieces * (1 + gap_s) + gap_s <= gap_s + 0.03


def test_a_final_begins_with_the_committed_words_whatever_its_decode_says() -> None:
    d = Driver(NO_CUTS)
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:24000]]))
    d.answer(d.pop("partial"), "I want to")
    d.feed(SPEECH[24000:32000])
    d.answer(d.pop("partial"), "I want to go")
    assert d.of(Partial)[-1].committed == "I want to"
    d.feed(silence(1.0, 16000))
    words = tuple(Word(word=f" {w}", start=i * 0.3, end=i * 0.3 + 0.2, probability=0.9)
                  for i, w in enumerate(["I", "wanna", "go", "home."]))
    d.answer(d.pop("candidate"), "I wanna go home.", words)
    (final,) = d.of(Final)
    assert final.text == "I want to go home."
    assert [w.word for w in final.words] == ["I", "want", "to", "go", "home."]


def test_a_hypothesis_spelling_committed_words_differently_neither_drops_nor_doubles() -> None:
    d = Driver(NO_CUTS)
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:24000]]))
    for text in ["I want to", "I want to go", "I wanna go home"]:
        d.answer(d.pop("partial"), text)
        d.feed(SPEECH[24000:32000])
    assert [p.text for p in d.of(Partial)] == ["I want to", "I want to go", "I want to go home"]
    assert d.of(Partial)[-1].committed == "I want to go"


def test_committed_words_after_a_cut_stay_in_the_head_and_are_not_doubled() -> None:
    d = Driver(Config(beam_size=1, cut_lookahead_s=0, pause_cut_s=1.0, commit_holdback_words=0))
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:32000]]))
    d.answer(d.pop("partial"), "press one to mute")
    d.feed(SPEECH[32000:40000])
    d.answer(d.pop("partial"), "press one to mute or")
    d.feed(silence(0.3, 16000))
    candidate = d.pop("candidate")
    d.feed(SPEECH[:16000])  # resumes: cut at the pause
    d.answer(candidate, "Press one to")  # the head's decode lost "mute"
    (head,) = d.of(Final)
    assert head.text == "press one to mute"  # the committed words are kept
    d.answer(d.pop("partial"), "mute or unmute yourself")  # the next decode has "mute"
    assert d.of(Partial)[-1].text == "or unmute yourself"


def test_words_unlike_those_carried_past_a_cut_are_not_taken_for_them() -> None:
    """The head's final keeps committed words its decode lacks; the next decode, not starting
    with them, loses none of its own words to them (seen in a replay: "because the sender"
    carried, "does not have a" dropped from the next final because the characters were
    aligned at any cost)."""
    d = Driver(Config(beam_size=1, cut_lookahead_s=0, pause_cut_s=1.0, commit_holdback_words=0))
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:32000]]))
    d.answer(d.pop("partial"), "this message because the sender")
    d.feed(SPEECH[32000:40000])
    d.answer(d.pop("partial"), "this message because the sender does")
    d.feed(silence(0.3, 16000))
    candidate = d.pop("candidate")
    d.feed(SPEECH[:16000])  # resumes: cut at the pause
    d.answer(candidate, "This message.")
    (head,) = d.of(Final)
    assert head.text == "this message because the sender"
    d.answer(d.pop("partial"), "does not have a mailbox.")
    assert d.of(Partial)[-1].text == "does not have a mailbox."


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
        d = Driver(NO_CUTS)
        d.load = Load(partial_backoff=backoff)
        d.feed(silence(0.5, 16000))
        ends = []
        for i in range(0, 64000, 1600):  # 4 s of speech, 100 ms at a time
            d.feed(SPEECH[i % len(SPEECH) : i % len(SPEECH) + 1600])
            for job in [j for j in d.jobs if j.kind == "partial"]:
                ends.append(job.end_sample / 16000)
                d.answer(d.pop("partial"), "That agent")
        return ends

    normal, loaded = partial_ends(1.0), partial_ends(2.0)
    assert len(normal) >= 6 and len(loaded) <= len(normal) // 2 + 1
    assert min(b - a for a, b in itertools.pairwise(loaded)) >= 0.95


def test_an_utterances_first_partial_is_not_stretched_under_load() -> None:
    """Under load partials come less often, but an utterance's first try for words is not
    stretched: the stretch starts once the utterance has words."""
    d = Driver(NO_CUTS)
    d.load = Load(partial_backoff=4.0)
    d.feed(silence(0.5, 16000))
    ends = []
    for i in range(0, 48000, 1600):  # 3 s of speech, 100 ms at a time
        d.feed(SPEECH[i : i + 1600])
        for job in [j for j in d.jobs if j.kind == "partial"]:
            ends.append(job.end_sample / 16000)
            assert job.request.voiced == (len(ends) > 1)
            assert job.request.first_words == (len(ends) == 1)
            d.answer(d.pop("partial"), "That agent")
    assert ends[0] <= 0.5 + 0.5 + 0.3  # speech from 0.5 s; an interval; the VAD's onset
    assert len(ends) == 2 and ends[1] - ends[0] >= 1.95


def test_an_utterances_first_partial_comes_after_less_speech_than_an_interval() -> None:
    """An utterance's first words are tried after 0.3 s of speech (with the pre-roll before
    it, tiny.en mostly has a word by then); the partials after it come an interval apart."""
    d = Driver(NO_CUTS)
    d.feed(silence(0.5, 16000))
    ends = []
    for i in range(0, 24000, 800):  # 1.5 s of speech, 50 ms at a time
        d.feed(SPEECH[i : i + 800])
        for job in [j for j in d.jobs if j.kind == "partial"]:
            ends.append(job.end_sample / 16000)
            d.answer(d.pop("partial"), "That agent")
    onset = d.of(SpeechStart)[0].start + 0.3  # the utterance starts a pre-roll before it
    assert 0.3 <= ends[0] - onset <= 0.3 + 0.05
    assert all(round(b - a, 3) >= 0.5 for a, b in itertools.pairwise(ends))


def test_an_utterance_that_stays_wordless_gets_the_load_stretch_after_two_seconds() -> None:
    """Sound the VAD takes for speech but Whisper finds no words in (music, noise) must not
    keep its partials at the unloaded cadence: the first-words exemption ends after 2 s."""
    d = Driver(NO_CUTS)
    d.load = Load(partial_backoff=4.0)
    d.feed(silence(0.5, 16000))
    partials = []
    for i in range(0, 96000, 1600):  # 6 s of speech, 100 ms at a time, no words heard
        d.feed(SPEECH[i % len(SPEECH) : i % len(SPEECH) + 1600])
        for job in [j for j in d.jobs if j.kind == "partial"]:
            partials.append(job)
            d.answer(d.pop("partial"), "")
    eager = [job.end_sample / 16000 for job in partials if job.request.first_words]
    later = [job.end_sample / 16000 for job in partials if not job.request.first_words]
    assert 3 <= len(eager) <= 5 and max(eager) <= 0.5 + 2.5
    assert later and min(b - a for a, b in itertools.pairwise([eager[-1], *later])) >= 1.95


def test_the_speech_after_a_cut_is_no_first_words() -> None:
    """An utterance opened by a cut continues speech whose words already show: its partials
    take the load's stretch and no precedence."""
    d = Driver(Config(beam_size=1, commit_cut_s=1.0))
    piece = SPEECH[8000:24000]
    parts = [silence(0.5, 16000)]
    for gap in [0.1, 0.13, 0.1]:
        parts += [piece, silence(gap, 16000)]
    audio = np.concatenate([*parts, piece, piece])
    young = []  # partials within their utterance's first second: (continues, first_words)
    for i in range(0, len(audio), 1600):
        d.feed(audio[i : i + 1600])
        for job in [j for j in d.jobs if j.kind == "partial"]:
            d.jobs.remove(job)
            utt = d.session._utts[job.utterance]
            if job.end_sample - utt.start <= 16000:
                young.append((utt.continues, job.request.first_words))
            d.session.on_result(job, None)
    assert (False, True) in young and (True, True) not in young and (True, False) in young


def test_the_newest_words_of_a_partial_are_never_committed() -> None:
    d = Driver(NO_CUTS.replace(commit_holdback_words=3))
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:24000]]))
    for text in ["please enter your", "please enter your agent number"]:
        d.answer(d.pop("partial"), text)
        d.feed(SPEECH[24000:32000])
    # "please enter your" agreed, but "your" is among the newest three words of the second
    assert d.of(Partial)[-1].committed == "please enter"


def test_a_session_without_a_language_passes_its_detections_on() -> None:
    d = Driver(interim=False, language=None)
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(1, 16000)]))
    first = d.pop("candidate")
    assert first.request.language is None and first.request.language_prior == ()
    d.answer(first, "La conferencia", language="it", detected=(("it", 0.6), ("es", 0.3)))
    d.feed(np.concatenate([clip, silence(1, 16000)]))
    second = d.pop("candidate")
    assert second.request.language_prior == (("it", 0.6), ("es", 0.3))
    d.answer(second, "ha sido desbloqueada", language="es", detected=(("es", 0.95),))
    assert [f.language for f in d.of(Final)] == ["it", "es"]  # each final's own language
    assert d.session.votes.prior == (("es", 1.13), ("it", 0.36))  # it: 0.6 decayed by 0.6


def test_a_given_language_sends_no_prior() -> None:
    d = Driver(interim=False, language="es")
    clip = clip_at("tt-weasels", 16000)
    d.feed(np.concatenate([silence(0.5, 16000), clip, silence(1, 16000)]))
    d.answer(d.pop("candidate"), "uno", language="es")
    d.feed(np.concatenate([clip, silence(1, 16000)]))
    job = d.pop("candidate")
    assert job.request.language == "es" and job.request.language_prior == ()


def test_an_unsure_detection_leans_to_the_session_and_a_sure_one_wins() -> None:
    votes = LanguageVotes()
    for detected in ((("es", 0.7), ("it", 0.2)), (("es", 0.5), ("pt", 0.4))):
        votes.add(detected)
    assert choose_language((("it", 0.55), ("es", 0.3)), votes.prior) == "es"
    assert choose_language((("it", 0.92), ("es", 0.05)), votes.prior) == "it"
    assert choose_language((("it", 0.55), ("es", 0.3)), ()) == "it"  # no vote yet


def test_a_session_that_changes_language_follows_it() -> None:
    """After a long Spanish session, unsure French detections win from the third utterance
    (the vote decays), a sure one at once."""
    votes = LanguageVotes()
    for _ in range(20):
        votes.add((("es", 0.8), ("it", 0.1)))
    chosen = []
    for _ in range(3):
        detected = (("fr", 0.6), ("es", 0.2))
        chosen.append(choose_language(detected, votes.prior))
        votes.add(detected)
    assert chosen == ["es", "es", "fr"]
    assert choose_language((("it", 0.9), ("es", 0.05)), votes.prior) == "it"


def test_an_utterance_is_gated_for_speech_until_a_decode_finds_words() -> None:
    """The engine's speech gate runs once per utterance: its decodes say `voiced` once one
    of them came back with words (a decode of more of the same audio has that voice too)."""
    d = Driver(NO_CUTS)
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:24000]]))
    first = d.pop("partial")
    assert not first.request.voiced
    d.answer(first, "")  # gated out, or no words yet
    d.feed(SPEECH[24000:32000])
    second = d.pop("partial")
    assert not second.request.voiced
    d.answer(second, "That agent")
    d.feed(np.concatenate([SPEECH[32000:], silence(1.0, 16000)]))
    final = next(j for j in d.jobs if j.kind in ("candidate", "final"))
    assert final.request.voiced
    d.answer(final, "That agent is already logged on")
    d.feed(np.concatenate([SPEECH[:24000], silence(0.2, 16000)]))  # the next utterance
    assert not d.pop("partial").request.voiced


def test_the_load_fed_with_a_frame_reaches_the_decodes_it_asks_for() -> None:
    """A client ahead of real time (a file): the transport says so with each frame, and every
    decode the session asks for until the next frame carries it for the scheduler."""
    d = Driver(NO_CUTS)
    d.load = Load(realtime=False)
    d.feed(np.concatenate([silence(0.5, 16000), SPEECH[:32000], silence(1.0, 16000)]))
    assert d.jobs and not any(j.request.realtime for j in d.jobs)
    d.load = IDLE
    d.feed(np.concatenate([SPEECH[:32000], silence(1.0, 16000)]))
    assert any(j.request.realtime for j in d.jobs)
