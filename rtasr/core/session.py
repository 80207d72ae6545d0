"""One connection's speech-recognition state machine (sans-I/O: bytes in, actions out).

A `Session` takes the client's audio frames and control messages and returns actions: server
messages to send and `DecodeJob`s to run on the engine. The transport runs each job and hands
the result back with `on_result`, which returns more actions. Nothing here touches a socket,
a thread or the model, so every policy below is testable with numpy arrays and a fake engine.

Policies:
- One hypothesis decode in flight per session: a session never holds more than one worker for
  its partials, so finals and other sessions are not slowed by it.
- Partials: every `partial_interval_ms` of new speech (stretched by `partial_backoff` while the
  engine is loaded, but not for an utterance's first words), decode the open utterance
  greedily. An utterance's first partial comes sooner, after `_FIRST_TRY` of speech (0.3 s,
  with the 0.3 s pre-roll before it: tiny.en has a word in 11 of 12 such decodes); one
  opened by a cut goes on from words already shown and waits the interval.
  `committed` grows by LocalAgreement-2: the longest common word prefix of two consecutive
  hypotheses, and never shrinks (utterance.py: what an utterance makes of its transcripts).
- Speculative finals: when speech pauses for `pause_ms`, the final decode starts at once (or as
  soon as the decode in flight returns) on the audio the final would have. If the pause becomes
  an endpoint that result *is* the final, so the final arrives as soon as the endpoint silence
  has passed; if speech resumes, the result serves as a partial and nothing is wasted. Where
  partials are decoded exactly as finals are (greedy finals: --spare-beam-size 1), a partial
  whose audio already holds all the speech and a little of the pause serves as the final too.
  A final that ends at a pause may get the spare-capacity beam; one cut out of run-on speech
  (or flushed) never does (`DecodeRequest.spare_ok`): its wait is the run-on latency.
- Run-on speech: cut only where the audio is quiet (session_cuts.py).
- Context (`context_s`, audio_context.py): an utterance that goes on from the one before (opened
  by a cut, or starting within `context_gap_s` of its end) is decoded hearing that one's
  audio too, and the words the earlier final holds are left out. A decode with the context
  that writes nothing, or none of its own words where partials heard some, is decoded again
  without it. The whole context after a sentence pause costs a third more per decode: an
  utterance that opens while the engine is `behind` (its finals waiting) has its finals hear
  only the context's last `busy_context_s` and its partials none; the context after a cut
  stays whole.
- `committed` words are never taken back: a hypothesis that spells them differently is
  aligned to them by characters (align.py) and only its words after them are new; the final
  begins with them too. Committed words that the head's decode lacks after a cut (spoken just
  after it) stay in the head's final and are removed from the next utterance's text.
- Finals go out in utterance order; an utterance whose decode has no words gets no final.
- Speakers (diarize=true): each final's speech is embedded in pieces cut at its pauses (an
  `EmbedJob`, asked for when the utterance ends or is cut, so it runs beside the final's decode,
  handed back with `on_embedding`) and the final goes out with a speaker on it and on each
  word, split where the voice changes inside it (speaker_finals.py).
"""

from __future__ import annotations

import logging

import numpy as np

from ..config import SAMPLE_RATE_HZ, Config
from .actions import Action, Cancel, DecodeJob, JobKind
from .audio import Audio, PcmDecoder
from .buffer import Segmenter, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted
from .engine_api import IDLE, DecodeRequest, LanguageVotes, Load, Priority, Transcript
from .finals import InOrder, final_words, spread
from .protocol import (
    Error,
    Final,
    Partial,
    SpeechEnd,
    SpeechStart,
    StreamParams,
    WireWord,
)
from .session_cuts import RunOnCuts
from .session_speakers import SpeakerLabels
from .speaker_finals import SpeakerFinals
from .utterance import Utterance

log = logging.getLogger(__name__)

_CUT_CHECK = SAMPLE_RATE_HZ // 5  # how often a long utterance looks for a cut point
_FIRST_WORDS = 2 * SAMPLE_RATE_HZ  # the speech an utterance's first words are hurried for
_FIRST_TRY = SAMPLE_RATE_HZ * 3 // 10  # the speech before an utterance's first partial
_MIN_TAIL = SAMPLE_RATE_HZ * 60 // 1000  # a partial serves as the final with >= 60 ms of pause


def _s(samples: int) -> float:
    return round(samples / SAMPLE_RATE_HZ, 3)


class Session(SpeakerLabels, RunOnCuts):
    def __init__(self, config: Config, params: StreamParams, session_id: str,
                 language: str | None) -> None:
        self.id = session_id
        self.config = config
        self.params = params
        self.language = language
        self.votes = LanguageVotes()  # with no language: the detections of its finals so far
        self.decoder = PcmDecoder(params.sample_rate, params.encoding)
        self.segmenter = Segmenter(config)
        self._utts: dict[int, Utterance] = {}
        # cut utterances, where, and their audio: their finals wait for the lookahead
        self._heads: list[tuple[Utterance, int, Audio]] = []
        self._finals = InOrder()
        self._speakers: SpeakerFinals | None = None  # with diarize=true, from its first final
        # the last utterance that ended: its index, end and audio; the last final's words
        self._last_ended: tuple[int, int, Audio] | None = None
        self._said: tuple[int, list[WireWord]] | None = None
        self.ended = False
        self._earlier_s = 0.0  # audio taken in a format the session had before `retune`
        self._tune(config)
        self.load = IDLE  # as of the last frame fed

    def _tune(self, config: Config) -> None:
        if config.commit_cut_s < 0 or config.pause_cut_s < 0:
            raise ValueError("a Session reads the effective config: Config.resolved()")
        ms = SAMPLE_RATE_HZ // 1000
        self._preroll_samples = config.preroll_ms * ms
        self._pause_samples = config.pause_ms * ms
        self._interval_samples = config.partial_interval_ms * ms
        self._commit_cut_samples = int(config.commit_cut_s * SAMPLE_RATE_HZ)
        self._pause_cut_samples = int(config.pause_cut_s * SAMPLE_RATE_HZ)
        self._max_utt_samples = int(config.max_utterance_s * SAMPLE_RATE_HZ)
        self._context_samples = int(config.context_s * SAMPLE_RATE_HZ)
        self._busy_context_samples = int(min(config.busy_context_s, config.context_s)
                                         * SAMPLE_RATE_HZ)
        self._context_gap_samples = int(config.context_gap_s * SAMPLE_RATE_HZ)
        self._lookahead_samples = int(config.cut_lookahead_s * SAMPLE_RATE_HZ)
        # Greedy finals: a partial is decoded exactly as a final would be, so it can serve as one
        # (not where a final may get a wider beam on spare capacity: --spare-beam-size).
        self._final_grade_partials = config.beam_size <= 1 and config.spare_beam_size <= 1

    def retune(self, config: Config, params: StreamParams) -> list[Action]:
        """New settings mid-stream (OpenAI's `session.update`), nothing already taken lost or
        taken again: the decodes asked for from now on use the new prompt, language and task;
        the segmenter's endpoint and pause silences and pre-roll apply from its next VAD frame;
        a new audio format or rate applies to the frames fed after this (the old resampler's
        last samples are pushed first). The buffer size and the VAD stay as they were."""
        actions: list[Action] = []
        if (params.sample_rate, params.encoding) != (self.decoder.sample_rate_hz,
                                                     self.decoder.encoding):
            self._push(self.decoder.flush(), actions)
            self._earlier_s += self.decoder.duration_s
            self.decoder = PcmDecoder(params.sample_rate, params.encoding)
        self.config, self.params, self.language = config, params, params.language
        self._tune(config)
        self.segmenter.retune(config)
        return actions

    # input -------------------------------------------------------------------------------

    def feed(self, data: bytes, load: Load = IDLE) -> list[Action]:
        """One binary frame of audio, and the load as the transport sees it now (the decodes
        asked for until the next frame follow it). Raises AudioFormatError for a malformed
        frame."""
        self.load = load
        samples = self.decoder.decode(data)
        actions: list[Action] = []
        step = self.config.frame_samples  # one VAD frame at a time: a cut acts on the frame
        for i in range(0, len(samples), step):
            self._push(samples[i : i + step], actions)
        return actions

    def flush(self) -> list[Action]:
        """Finalize the open utterance now."""
        actions: list[Action] = []
        self._due_heads(actions, force=True)
        ended = self.segmenter.flush()
        if ended is not None:
            self._on_ended(ended, actions)
        return actions

    def end(self) -> list[Action]:
        """The stream is over: finalize everything."""
        actions: list[Action] = []
        if not self.ended:
            self._push(self.decoder.flush(), actions)
            actions += self.flush()
            self.ended = True
        return actions

    @property
    def awaiting_finals(self) -> bool:
        """True while an ended utterance's final has not been delivered."""
        return (any(u.closed for u in self._utts.values())
                or (self._speakers is not None and self._speakers.waiting))

    @property
    def duration_s(self) -> float:
        return round(self._earlier_s + self.decoder.duration_s, 3)

    def _push(self, samples: Audio, actions: list[Action]) -> None:
        for event in self.segmenter.push(samples):
            if isinstance(event, SpeechStarted):
                self._open(event.utterance, event.start, actions)
            elif isinstance(event, SpeechPaused):
                self._on_paused(event, actions)
            elif isinstance(event, SpeechResumed):
                self._on_resumed(self._utts[event.utterance], actions)
            elif isinstance(event, SpeechEnded):
                self._due_heads(actions, force=True)
                self._on_ended(event, actions)
        self._due_heads(actions)
        self._next_decodes(actions)

    def _open(self, index: int, start: int, actions: list[Action], *,
              continues: bool = False) -> None:
        # the first partial is due `_FIRST_TRY` after the onset (a pre-roll after `start`), as
        # if one had been asked for an interval before that
        early = 0 if continues else max(0, self._interval_samples - _FIRST_TRY)
        utt = self._utts[index] = Utterance(
            index, start, partial_from=start + self._preroll_samples - early, continues=continues)
        ended = self._last_ended
        if (not continues and ended is not None and ended[0] == index - 1
                and start - ended[1] <= self._context_gap_samples):
            behind = self.load.behind
            utt.context = self._context_of(
                index - 1, ended[2], ended[1],
                self._busy_context_samples if behind else self._context_samples)
            utt.context_partials = not behind
        actions.append(SpeechStart(utterance=index, start=_s(start), continues=continues))

    def _serves_as_final(self, job: DecodeJob, start: int, end: int) -> bool:
        """Whether `job` decoded the audio a final for [start, end) needs, as a final would."""
        tail_from = end - self._pause_samples + _MIN_TAIL
        if job.start_sample != start or not tail_from <= job.end_sample <= end:
            return False
        return job.kind == "candidate" or self._final_grade_partials

    def _supersede(self, utt: Utterance, actions: list[Action]) -> None:
        """Drop the utterance's partial in flight: a final-grade decode must not wait for it
        (under load a partial may sit in the engine's queue for a second)."""
        job = utt.inflight
        if job is not None and job.kind == "partial":
            utt.inflight = None
            actions.append(Cancel(job))

    def _on_paused(self, event: SpeechPaused, actions: list[Action]) -> None:
        utt = self._utts[event.utterance]
        utt.paused, utt.tail_end = True, event.end
        if utt.inflight is not None and self._serves_as_final(utt.inflight, utt.start,
                                                              event.end):
            return
        self._supersede(utt, actions)
        if utt.inflight is not None:  # a candidate for an earlier pause: the next follows it
            utt.want_candidate = True
            return
        utt.inflight = self._job("candidate", utt, event.start, event.end, event.audio)
        actions.append(utt.inflight)

    def _on_ended(self, event: SpeechEnded, actions: list[Action]) -> None:
        utt = self._utts[event.utterance]
        utt.closed = True
        utt.endpoint = not event.forced
        self._last_ended = (utt.index, event.end, event.audio)
        if utt.endpoint:
            actions.append(SpeechEnd(utterance=utt.index, end=_s(event.end)))
        self._embed(utt, event.start, event.audio, actions)
        if utt.inflight is not None and self._serves_as_final(utt.inflight, event.start,
                                                               event.end):
            utt.final_job = utt.inflight
            return
        if utt.last_done is not None and self._serves_as_final(utt.last_done[0], event.start,
                                                                event.end):
            utt.final_job = utt.last_done[0]
            self._complete(utt, *utt.last_done, actions)
            return
        self._supersede(utt, actions)
        if utt.inflight is not None:
            # A candidate (final priority) for an earlier pause is decoding: the final follows
            # it rather than running beside it.
            utt.final_span = (event.start, event.end, event.audio)
            return
        utt.final_job = self._job("final", utt, event.start, event.end, event.audio)
        actions.append(utt.final_job)

    def _next_decodes(self, actions: list[Action]) -> None:
        """Start the open utterance's next partial, candidate or cut decode, if it is due."""
        open_ = self.segmenter.open_utterance
        if open_ is None or self.ended:
            return
        utt = self._utts[open_.index]
        pos = self.segmenter.position
        if utt.paused:
            if utt.want_candidate and utt.inflight is None:
                utt.want_candidate = False
                audio = self.segmenter.buffer.read(utt.start, utt.tail_end)
                utt.inflight = self._job("candidate", utt, utt.start, utt.tail_end, audio)
                actions.append(utt.inflight)
            return
        if pos - utt.start >= self._commit_cut_samples and pos >= utt.cut_check:
            utt.cut_check = pos + _CUT_CHECK
            at = self._cut_point(utt.start, pos)
            if at is not None:
                self._cut(utt, at, actions)
                return
        # under load partials come less often, but an utterance's first words do not wait
        stretch = 1.0 if self._first_words(utt, pos) else self.load.partial_backoff
        if (self.params.interim_results and utt.inflight is None
                and pos - utt.partial_from >= self._interval_samples * stretch):
            utt.partial_from = pos
            audio = self.segmenter.buffer.read(utt.start, pos)
            utt.inflight = self._job("partial", utt, utt.start, pos, audio)
            actions.append(utt.inflight)

    def _first_words(self, utt: Utterance, pos: int) -> bool:
        """A partial now may bring the utterance's first words: none yet, no cut before it
        (speech that goes on past a cut already shows words), and no more than _FIRST_WORDS
        of speech so far (past that, what the VAD took for speech may be music or noise, and
        its partials take the load's stretch like any other)."""
        return (not utt.voiced and not utt.continues
                and pos - (utt.start + self._preroll_samples) <= _FIRST_WORDS)

    def _job(self, kind: JobKind, utt: Utterance, start: int, end: int,
             audio: Audio, ahead: Audio | None = None) -> DecodeJob:
        partial = kind == "partial"
        context = utt.context
        left = audio[:0]
        if context is not None and start == utt.start and (utt.context_partials or not partial):
            own = len(audio) + (0 if ahead is None else len(ahead))
            left = context.fit(own, self.config.encoder_window_s)
        ahead = audio[:0] if ahead is None else ahead
        # words are kept by their time: the context needs word timestamps
        greedy_only = (partial and not self._final_grade_partials and not len(left)
                       and not len(ahead))
        if len(left) or len(ahead):
            audio = np.concatenate([left, audio, ahead])
        request = DecodeRequest(
            audio=audio,
            priority=Priority.PARTIAL if partial else Priority.FINAL,
            session=self.id,
            language=self.language,
            context_samples=len(left),
            language_prior=self.votes.prior,
            task=self.params.task,
            prompt=self._prompt(utt),
            initial_prompt=self.params.prompt,
            beam_size=1 if partial else self.config.beam_size,
            word_timestamps=not greedy_only,
            realtime=self.load.realtime,
            voiced=utt.voiced,
            first_words=partial and self._first_words(utt, end),
            capped=partial and not self._final_grade_partials,
            spare_ok=not (kind == "final" and utt.closed and not utt.endpoint),
        )
        return DecodeJob(kind, utt.index, start, end, request, len(left), len(ahead))

    # results -----------------------------------------------------------------------------

    def on_result(self, job: DecodeJob, result: Transcript | None) -> list[Action]:
        """A job's transcript (None: a partial the engine replaced or dropped)."""
        actions: list[Action] = []
        utt = self._utts.get(job.utterance)
        if utt is None:
            return actions
        result = utt.own(job, result)
        if utt.inflight is job:
            self._land(utt, job, result is not None, actions)
        if utt.final_job is job:
            if result is None:  # a partial chosen as the final, then dropped by the engine
                utt.final_job = self._job("final", utt, job.start_sample, job.end_sample,
                                          job.own_audio)
                actions.append(utt.final_job)
            else:
                self._complete(utt, job, result, actions)
        elif result is not None:
            utt.last_done = (job, result)
            if not utt.closed and self.params.interim_results:
                self._partial(utt, job, result, actions)
        self._next_decodes(actions)
        return actions

    def _land(self, utt: Utterance, job: DecodeJob, usable: bool,
              actions: list[Action]) -> None:
        """The decode in flight came back: a final waiting for it may use it or start now."""
        utt.inflight = None
        if utt.final_span is None:
            return
        start, end, audio = utt.final_span
        utt.final_span = None
        if usable and self._serves_as_final(job, start, end):
            utt.final_job = job
        else:
            utt.final_job = self._job("final", utt, start, end, audio)
            actions.append(utt.final_job)

    def on_failure(self, job: DecodeJob, error: Exception) -> list[Action]:
        """A job failed in the engine: a final becomes an error, anything else is forgotten."""
        actions: list[Action] = []
        utt = self._utts.get(job.utterance)
        if utt is None:
            return actions
        if utt.inflight is job:
            self._land(utt, job, False, actions)
        if utt.final_job is job:
            log.warning("final of utterance %d failed: %s", utt.index, error,
                        extra={"session": self.id})
            actions.append(Error(code="engine_error", utterance=utt.index,
                                 message=f"utterance {utt.index} ({_s(utt.start):.2f}-"
                                         f"{_s(job.end_sample):.2f} s) could not be transcribed"))
            self._complete(utt, job, None, actions)
        self._next_decodes(actions)
        return actions

    def _partial(self, utt: Utterance, job: DecodeJob, result: Transcript,
                 actions: list[Action]) -> None:
        if utt.hypothesis(result.text.split(), job.by_text, self.config.commit_holdback_words):
            actions.append(Partial(utterance=utt.index, start=_s(utt.start), end=_s(job.end_sample),
                                   text=" ".join(utt.committed + (utt.tail or [])),
                                   committed=" ".join(utt.committed)))

    def _prompt(self, utt: Utterance) -> str | None:
        """The decoder prompt: the running context (--context-chars), or, where the
        utterance continues a cut one, the text before the cut (--cut-context-chars)."""
        if self._finals.context:
            return self._finals.context
        if utt.continues and self.config.cut_context_chars > 0 and self._finals.last_text:
            return self._finals.last_text[-self.config.cut_context_chars :]
        return None

    def _complete(self, utt: Utterance, job: DecodeJob, result: Transcript | None,
                  actions: list[Action]) -> None:
        final: Final | None = None
        if result is not None and result.text:
            self.votes.add(result.detected)
            words = self._final_words(utt, result, _s(job.start_sample), _s(job.end_sample),
                                      job.by_text)
            if words:
                final = Final(
                    utterance=utt.index, start=_s(job.start_sample), end=_s(job.end_sample),
                    text=" ".join(w.word for w in words), words=words,
                    language=result.language or self.language, endpoint=utt.endpoint,
                )
        elif utt.committed:  # the words the client was told are settled are not lost
            final = Final(utterance=utt.index, start=_s(job.start_sample), end=_s(job.end_sample),
                          text=" ".join(utt.committed),
                          words=spread(utt.committed, _s(job.start_sample), _s(job.end_sample)),
                          language=self.language, endpoint=utt.endpoint)
        del self._utts[utt.index]
        due = self._finals.put(utt.index, final, self.config.context_chars)
        actions += self._labelled(utt, job, final, due, actions)

    def _final_words(self, utt: Utterance, result: Transcript, offset: float,
                     end: float, by_text: bool = False) -> list[WireWord]:
        """The final's words (finals.py); committed words the decode lacks at its end (spoken
        just after a cut) pass to the next utterance as words to skip."""
        words, left = final_words(result, offset, end, [] if by_text else utt.skip,
                                  utt.committed)
        nxt = self._utts.get(utt.index + 1)
        if left and nxt is not None:
            nxt.skip_said(left)
        self._said = (utt.index, words)
        if nxt is not None and nxt.context is not None and nxt.context.words is None:
            nxt.context.hear(words)
        return words
