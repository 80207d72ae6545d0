"""The real model behind the scheduler."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rtasr
from rtasr.core.engine_api import DecodeRequest, Priority, Transcript
from rtasr.engine import Engine
from rtasr.engine import engine as engine_module
from rtasr.engine.decoder import prep_threads
from rtasr.engine.scheduler import Job
from rtasr.errors import EngineError

from .helpers import TRANSCRIPTS, CountingModel, clip_at, silence, trimmed, word_errors


def req(name: str, priority: Priority = Priority.FINAL, session: str = "s") -> DecodeRequest:
    return DecodeRequest(audio=clip_at(name, 16000), priority=priority, session=session,
                   language="en", word_timestamps=True)


class HeldWorkers:
    """Every engine worker held inside a blocker's decode until `release()`; records the
    sessions of the decodes that start (in order), so a test can check the queue's order."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.engine = engine
        self.order: list[str] = []
        self.batches: list[list[str]] = []
        self._loop = asyncio.get_running_loop()
        self._released = threading.Event()
        self._started: dict[str, asyncio.Event] = {}
        self._blockers: list[asyncio.Task[Transcript | None]] = []
        self._decode = engine.decode_batch
        monkeypatch.setattr(engine, "decode_batch", self._holding)

    def _holding(self, requests: list[DecodeRequest], **kwargs: bool) -> list[Transcript]:
        self.order.extend(r.session for r in requests)
        self.batches.append([r.session for r in requests])
        held = [self._started[r.session] for r in requests if r.session in self._started]
        for started in held:
            self._loop.call_soon_threadsafe(started.set)
        if held:
            self._released.wait(timeout=60)
        return self._decode(requests, **kwargs)

    async def hold(self) -> None:
        """Occupy every worker, one at a time, so no two blockers share a batch."""
        for i in range(self.engine.config.workers):
            name = f"blocker{i}"
            self._started[name] = asyncio.Event()
            self._blockers.append(asyncio.create_task(
                self.engine.transcribe(req("tt-weasels", session=name))))
            async with asyncio.timeout(30):
                await self._started[name].wait()

    async def release(self) -> None:
        self._released.set()
        await asyncio.gather(*self._blockers)

    @property
    def after_blockers(self) -> list[str]:
        return [s for s in self.order if s not in self._started]

    @property
    def batches_after_blockers(self) -> list[list[str]]:
        return [b for b in self.batches if not set(b) & set(self._started)]


@pytest.fixture
async def held(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HeldWorkers]:
    held = HeldWorkers(engine, monkeypatch)
    await held.hold()
    try:
        yield held
    finally:
        await held.release()


async def test_transcribes_real_speech_with_word_times(engine: Engine) -> None:
    result = await engine.transcribe(req("agent-alreadyon"))
    assert result is not None
    assert word_errors(TRANSCRIPTS["agent-alreadyon"], result.text) == 0
    assert result.words and all(0 <= w.start <= w.end <= 6 for w in result.words)


async def test_music_gives_no_words(engine: Engine) -> None:
    result = await engine.transcribe(req("music-macroform-cold_day"))
    assert result is not None and result.text == "" and result.words == ()


async def test_a_newer_partial_replaces_a_queued_one(engine: Engine, held: HeldWorkers,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.scheduler, "partial_max_wait_s", 30.0)
    stale = asyncio.create_task(engine.transcribe(req("tt-weasels", Priority.PARTIAL)))
    await asyncio.sleep(0)  # let the task submit its request
    fresh = asyncio.create_task(engine.transcribe(req("tt-weasels", Priority.PARTIAL)))
    assert await stale is None
    await held.release()
    fresh_result = await fresh
    assert fresh_result is not None
    assert word_errors(TRANSCRIPTS["tt-weasels"], fresh_result.text) == 0, fresh_result.text


async def test_finals_go_before_partials(engine: Engine, held: HeldWorkers,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.scheduler, "partial_max_wait_s", 30.0)  # not dropped: queued
    partial = asyncio.create_task(engine.transcribe(req("tt-weasels", Priority.PARTIAL, "p")))
    await asyncio.sleep(0)  # the partial is queued first
    final = asyncio.create_task(engine.transcribe(req("tt-weasels", Priority.FINAL, "f")))
    await asyncio.sleep(0)
    assert engine.queue_depth == 2
    await held.release()
    results = await asyncio.gather(partial, final)
    assert all(r is not None for r in results)
    assert held.after_blockers == ["f", "p"]


async def test_a_file_sent_faster_than_real_time_does_not_delay_live_finals(
        engine: Engine, held: HeldWorkers) -> None:
    # more than every worker's next batch
    flood = engine.config.workers * engine.config.max_batch_size + 1
    files = [asyncio.create_task(engine.transcribe(
        dataclasses.replace(req("conf-onlyperson", session="file"), realtime=False)))
        for _ in range(flood)]
    await asyncio.sleep(0)  # the file's finals are queued first
    live = asyncio.create_task(engine.transcribe(req("tt-weasels", session="live")))
    await asyncio.sleep(0)
    assert engine.queue_depth == flood + 1
    await held.release()
    result = await live
    assert result is not None and word_errors(TRANSCRIPTS["tt-weasels"], result.text) == 0
    # the live final started on the first free worker, alone (not slowed by file mates)
    assert ["live"] in held.batches_after_blockers[: engine.config.workers]
    assert all(r is not None for r in await asyncio.gather(*files))


async def test_a_failing_request_costs_only_itself(engine: Engine) -> None:
    bad = DecodeRequest(audio=np.zeros((2, 2), np.float32), priority=Priority.FINAL, session="bad")
    with pytest.raises(EngineError):
        await engine.transcribe(bad)
    good = await engine.transcribe(req("tt-weasels"))
    assert good is not None and word_errors(TRANSCRIPTS["tt-weasels"], good.text) == 0


async def test_the_event_loop_stays_responsive_while_decoding(engine: Engine) -> None:
    decodes = asyncio.gather(*(engine.transcribe(req("agent-alreadyon", session=str(i)))
                               for i in range(4)))
    lags = []
    while not decodes.done():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - t - 0.01)
    await decodes
    assert len(lags) > 20
    assert max(lags) < 0.25, f"event loop blocked for {max(lags):.3f} s"


def test_batched_decodes_equal_decodes_alone(engine: Engine) -> None:
    names = ["agent-alreadyon", "tt-weasels", "conf-onlyperson", "music-macroform-cold_day"]
    requests = [req(n, session=n) for n in names]
    alone = [engine.decode_batch([r])[0] for r in requests]
    batched = engine.decode_batch(requests)
    assert [b.text for b in batched] == [a.text for a in alone]
    assert [b.words for b in batched] == [a.words for a in alone]
    assert word_errors(TRANSCRIPTS["tt-weasels"], batched[1].text) == 0
    assert batched[3].text == ""


async def test_waiting_requests_are_batched_through_the_scheduler(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.scheduler, "max_batch_size", 4)
    held = HeldWorkers(engine, monkeypatch)
    await held.hold()
    before = engine.scheduler.batch_sizes.copy()
    names = ["tt-weasels", "conf-onlyperson", "agent-alreadyon"]
    waiting = [asyncio.create_task(engine.transcribe(req(n, session=n))) for n in names]
    await asyncio.sleep(0)  # let the tasks submit their requests
    assert engine.queue_depth == len(names)  # every worker is busy: they wait together
    await held.release()
    results = await asyncio.gather(*waiting)
    grown = engine.scheduler.batch_sizes - before
    assert sum(size * count for size, count in grown.items()) == len(names)
    assert max(grown) > 1, f"no batch formed: {dict(grown)}"
    for name, result in zip(names, results, strict=True):
        assert result is not None and word_errors(TRANSCRIPTS[name], result.text) == 0


async def test_a_lone_final_keeps_the_beam_beside_a_riding_partial(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A final that no other final decodes or waits for gets the beam with an utterance's
    first words riding in its batch; the wider window only alone (one window per batch).
    Finals batched with finals are greedy."""
    asked: list[dict[str, Any]] = []
    decode = engine.decode_batch

    def recorded(requests: list[DecodeRequest], **kwargs: Any) -> list[Transcript]:
        asked.append(kwargs)
        return decode(requests, **kwargs)

    monkeypatch.setattr(engine, "decode_batch", recorded)
    loop = asyncio.get_running_loop()
    final, partial = req("tt-weasels", session="a"), req("transfer", Priority.PARTIAL, "b")
    jobs = [Job(engine_module._Queued(r, []), partial=r.priority is Priority.PARTIAL,
                session=r.session, key="k", loop=loop) for r in (final, partial)]
    engine._run(jobs)  # no other final decodes or waits: lone
    assert asked[-1]["final_beam"] and not asked[-1]["spare"]
    engine._run(jobs[:1])
    assert asked[-1]["final_beam"] and asked[-1]["spare"]
    other = Job(engine_module._Queued(req("transfer", session="c"), []), partial=False,
                session="c", key="k", loop=loop)
    engine._run([jobs[0], other])  # two finals
    assert not asked[-1]["final_beam"] and not asked[-1]["spare"]


async def test_a_failing_request_does_not_fail_its_batch(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.scheduler, "max_batch_size", 4)
    held = HeldWorkers(engine, monkeypatch)
    await held.hold()
    bad = DecodeRequest(audio=np.zeros((2, 2), np.float32), priority=Priority.FINAL,
                  session="bad", language="en")
    outcomes = asyncio.gather(engine.transcribe(req("tt-weasels", session="good")),
                              engine.transcribe(bad), return_exceptions=True)
    await asyncio.sleep(0)
    assert engine.queue_depth == 2
    await held.release()
    good, failed = await outcomes
    assert isinstance(good, Transcript) and word_errors(TRANSCRIPTS["tt-weasels"], good.text) == 0
    assert isinstance(failed, EngineError)
    # decoded together first; when that batch failed, each alone
    assert held.batches_after_blockers == [["good", "bad"], ["good"], ["bad"]]


async def test_a_flood_of_partials_does_not_starve_finals(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    decode = engine.decode_batch

    def recording(requests: list[DecodeRequest], **kwargs: bool) -> list[Transcript]:
        started.extend(r.session for r in requests if r.priority is Priority.FINAL)
        return decode(requests, **kwargs)

    monkeypatch.setattr(engine, "decode_batch", recording)
    stop = asyncio.Event()
    partials_done = 0

    async def flood(session: str) -> None:
        nonlocal partials_done
        while not stop.is_set():
            await engine.transcribe(req("tt-weasels", Priority.PARTIAL, session))
            partials_done += 1

    flooders = [asyncio.create_task(flood(f"p{i}")) for i in range(12)]
    await asyncio.sleep(0.2)
    finals = []
    for i in range(6):  # finals submitted one after another, 100 ms apart, under the flood
        final = engine.transcribe(req("conf-onlyperson", session=f"f{i}"))
        finals.append(asyncio.create_task(final))
        await asyncio.sleep(0.1)
    async with asyncio.timeout(60):
        results = await asyncio.gather(*finals)
    stop.set()
    await asyncio.gather(*flooders)
    assert all(r is not None and word_errors(TRANSCRIPTS["conf-onlyperson"], r.text) == 0
               for r in results)
    assert started == [f"f{i}" for i in range(6)]  # oldest final first, none skipped


def engine_threads() -> int:
    return sum(t.name.startswith("rtasr-engine-") and t.is_alive() for t in threading.enumerate())


async def test_a_worker_survives_a_result_mismatch_and_the_request_fails(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    decode = engine.decode_batch

    def losing(requests: list[DecodeRequest], **kwargs: bool) -> list[Transcript]:
        results = decode(requests, **kwargs)
        return results[1:] if requests[0].session == "lost" else results

    monkeypatch.setattr(engine, "decode_batch", losing)
    for _ in range(engine.config.workers + 1):  # more failures than workers: each must survive
        async with asyncio.timeout(20):
            with pytest.raises(EngineError):
                await engine.transcribe(req("tt-weasels", session="lost"))
    assert engine_threads() == engine.config.workers
    good = await engine.transcribe(req("tt-weasels", session="good"))
    assert good is not None and word_errors(TRANSCRIPTS["tt-weasels"], good.text) == 0


async def test_a_failing_observer_costs_no_transcript_and_no_worker(engine: Engine) -> None:
    def broken(priority: Priority, seconds: float, size: int) -> None:
        raise RuntimeError("observer bug")

    engine.observers.append(broken)
    try:
        for _ in range(engine.config.workers + 1):
            async with asyncio.timeout(20):
                result = await engine.transcribe(req("tt-weasels"))
            assert result is not None and word_errors(TRANSCRIPTS["tt-weasels"], result.text) == 0
    finally:
        engine.observers.remove(broken)
    assert engine_threads() == engine.config.workers


async def test_a_prompt_is_tokenized_once_when_submitted(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch key counts the prompt's tokens on submit; the worker's decode reuses them."""
    tokenized: list[str] = []
    prompt_tokens = engine.decoder.prompt_tokens

    def counted(request: DecodeRequest) -> list[int]:
        tokenized.append(request.session)
        return prompt_tokens(request)

    monkeypatch.setattr(engine.decoder, "prompt_tokens", counted)
    request = dataclasses.replace(req("tt-weasels"), prompt="Please hold the line.")
    async with asyncio.timeout(20):
        result = await engine.transcribe(request)
    assert result is not None and word_errors(TRANSCRIPTS["tt-weasels"], result.text) == 0
    assert tokenized == ["s"]


def test_only_the_engine_modules_import_faster_whisper_and_ctranslate2() -> None:
    """The rest of rtasr reads the engine's own dataclasses (core/engine_api.py), never the
    model's."""
    package = Path(rtasr.__file__).parent
    importing = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("faster_whisper", "ctranslate2") for n in names):
                importing.add(path.relative_to(package).as_posix())
    assert importing == {"engine/engine.py", "engine/decoder.py"}


def test_the_faster_whisper_internals_the_engine_calls_are_still_there(engine: Engine) -> None:
    """engine/decoder.py calls faster-whisper's private helpers; pyproject pins the range
    tested. A release that renames or reorders them fails here, by name, before any decode does."""
    import ctranslate2
    from faster_whisper import WhisperModel, audio, feature_extractor, tokenizer, transcribe, vad

    # (what, callable, the leading parameters engine/decoder.py passes, in order)
    expected: list[tuple[str, object, list[str]]] = [
        ("WhisperModel._split_segments_by_timestamps",
         getattr(WhisperModel, "_split_segments_by_timestamps", None),
         ["self", "tokenizer", "tokens", "time_offset", "segment_size", "segment_duration",
          "seek"]),
        ("WhisperModel.add_word_timestamps", getattr(WhisperModel, "add_word_timestamps", None),
         ["self", "segments", "tokenizer", "encoder_output", "num_frames",
          "prepend_punctuations", "append_punctuations", "last_speech_timestamp"]),
        ("WhisperModel.get_prompt", getattr(WhisperModel, "get_prompt", None),
         ["self", "tokenizer", "previous_tokens", "without_timestamps"]),
        ("WhisperModel.encode", getattr(WhisperModel, "encode", None), ["self", "features"]),
        ("FeatureExtractor.__call__", feature_extractor.FeatureExtractor.__call__,
         ["self", "waveform"]),
        ("Tokenizer", tokenizer.Tokenizer.__init__,
         ["self", "tokenizer", "multilingual", "task", "language"]),
        ("transcribe.get_suppressed_tokens", getattr(transcribe, "get_suppressed_tokens", None),
         ["tokenizer", "suppress_tokens"]),
        ("transcribe.get_compression_ratio", getattr(transcribe, "get_compression_ratio", None),
         ["text"]),
        ("audio.pad_or_trim", getattr(audio, "pad_or_trim", None), ["array", "length"]),
        ("vad.get_speech_timestamps", getattr(vad, "get_speech_timestamps", None),
         ["audio", "vad_options"]),
    ]
    problems = []
    for what, func, params in expected:
        if not callable(func):
            problems.append(f"{what} is gone")
            continue
        got = list(inspect.signature(func).parameters)[: len(params)]
        if got != params:
            problems.append(f"{what}{tuple(got)}: engine/decoder.py passes {tuple(params)}")
    options = {f.name for f in dataclasses.fields(vad.VadOptions)}
    problems += [f"VadOptions.{name} is gone"
                 for name in ("min_silence_duration_ms", "speech_pad_ms") if name not in options]
    generate_doc = ctranslate2.models.Whisper.generate.__doc__ or ""
    problems += [f"ctranslate2 Whisper.generate lost {name}=" for name in (
        "beam_size", "patience", "length_penalty", "max_length", "return_scores",
        "return_no_speech_prob", "suppress_blank", "suppress_tokens",
        "max_initial_timestamp_index") if f"{name}:" not in generate_doc]
    result = ctranslate2.models.WhisperGenerationResult
    problems += [f"WhisperGenerationResult.{name} is gone"
                 for name in ("sequences_ids", "scores", "no_speech_prob")
                 if not hasattr(result, name)]
    model = engine.decoder.model
    problems += [f"WhisperModel().{name} is gone" for name in (
        "feature_extractor", "hf_tokenizer", "max_length", "supported_languages", "model")
        if not hasattr(model, name)]
    problems += [f"ctranslate2 Whisper.{name} is gone" for name in (
        "detect_language", "is_multilingual") if not hasattr(model.model, name)]
    assert not problems, "faster-whisper internals changed: " + "; ".join(problems)
    # _split_segments_by_timestamps returns (segments, seek, single_timestamp_ending), and at
    # least one segment for no tokens (engine/decoder.py keeps the first one of a silent item)
    segments, _, _ = model._split_segments_by_timestamps(
        tokenizer=engine.decoder._tokenizer("en"), tokens=[], time_offset=0.0, segment_size=100,
        segment_duration=1.0, seek=0)
    assert segments and segments[0]["tokens"] == []


def test_max_tokens_per_s_caps_each_decode(engine: Engine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    request = req("tt-weasels")
    full = engine.decode_batch([request])[0].text
    monkeypatch.setattr(engine.decoder, "config", engine.config.replace(max_tokens_per_s=0.5))
    capped = engine.decode_batch([request])[0].text
    assert word_errors(TRANSCRIPTS["tt-weasels"], full) == 0
    assert 0 < len(capped.split()) < len(full.split()), (full, capped)
    assert full.startswith(capped), (full, capped)


def test_a_partial_is_capped_at_its_tokens_per_second_and_a_final_is_not(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """--partial-max-tokens-per-s: a partial stuck in a loop stops early (base wrote "M-E-M"
    for 1.1 s of French in 2.5 s, looping to the model's limit); its final is decoded in
    full."""
    full = engine.decode_batch([req("tt-weasels")])[0].text
    monkeypatch.setattr(engine.decoder, "config",
                        engine.config.replace(partial_max_tokens_per_s=0.5))
    partial = dataclasses.replace(req("tt-weasels", Priority.PARTIAL, "p"), capped=True)
    partial, final = engine.decode_batch([partial, req("tt-weasels", session="f")])
    assert final.text == full
    assert 0 < len(partial.text.split()) < len(full.split()), (full, partial.text)
    assert full.startswith(partial.text), (full, partial.text)


def test_without_timestamp_tokens_the_words_keep_their_times(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-timestamp-tokens: the decoder samples text only (no timestamp rules); the words
    are still timed, by alignment, and still within the audio."""
    names = ["agent-alreadyon", "tt-weasels"]
    monkeypatch.setattr(engine.decoder, "config", engine.config.replace(timestamp_tokens=False))
    results = engine.decode_batch([req(n, session=n) for n in names])
    for name, result in zip(names, results, strict=True):
        assert word_errors(TRANSCRIPTS[name], result.text) == 0, result.text
        assert result.text == "".join(w.word for w in result.words).strip()
        assert all(0 <= w.start <= w.end <= len(clip_at(name, 16000)) / 16000 + 0.1
                   for w in result.words)


def test_a_decode_that_loops_keeps_the_words_before_the_loop(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without timestamp tokens tiny.en does not stop after vm-opts's last word: it repeats
    "Press 0 for mailbox options." up to the token limit. The repetition check used to drop
    the whole decode (15 words lost); the loop is cut instead."""
    monkeypatch.setattr(engine.decoder, "config", engine.config.replace(timestamp_tokens=False))
    request = DecodeRequest(audio=trimmed("vm-opts"), priority=Priority.FINAL, session="s",
                      language="en", word_timestamps=True)
    result = engine.decode_batch([request])[0]
    assert word_errors(TRANSCRIPTS["vm-opts"], result.text) == 0, result.text
    assert result.text == "".join(w.word for w in result.words).strip()


def test_without_timestamp_tokens_a_last_sentence_said_twice_is_kept_once(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run-on stream's vm-mismatch, decoded with the final before it ("Please hold while I
    try that extension.") as context and without timestamp tokens: tiny.en says "... did not
    match. Please try again. Please try again.", the second copy aligned to no time at the
    audio's end. Two copies are no loop and pass the compression check."""
    monkeypatch.setattr(engine.decoder, "config", engine.config.replace(timestamp_tokens=False))
    request = DecodeRequest(audio=trimmed("vm-mismatch"), priority=Priority.FINAL, session="s",
                      language="en", prompt=TRANSCRIPTS["transfer"], word_timestamps=True)
    result = engine.decode_batch([request])[0]
    assert result.text.count("try again") == 1, result.text
    assert word_errors(TRANSCRIPTS["vm-mismatch"], result.text) <= 1, result.text  # "password"
    assert result.text == "".join(w.word for w in result.words).strip()


@pytest.mark.parametrize("timestamp_tokens", [True, False])
def test_a_sentence_really_said_twice_is_kept_twice(
        engine: Engine, monkeypatch: pytest.MonkeyPatch, timestamp_tokens: bool) -> None:
    """vm-mismatch with its own "Please try again." spoken once more after it: both copies
    are in the audio, and both stay."""
    monkeypatch.setattr(engine.decoder, "config",
                        engine.config.replace(timestamp_tokens=timestamp_tokens))
    audio = trimmed("vm-mismatch")
    again = audio[int(3.3 * 16000):]  # "Please try again."
    request = DecodeRequest(audio=np.concatenate([audio, silence(0.3, 16000), again]),
                      priority=Priority.FINAL, session="s", language="en",
                      prompt=TRANSCRIPTS["transfer"], word_timestamps=True)
    result = engine.decode_batch([request])[0]
    assert result.text.lower().count("try again") == 2, result.text


def test_a_final_decoded_with_capacity_to_spare_gets_the_spare_beam(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """--spare-beam-size: a final decoded while the engine has capacity to spare gets the
    wider beam; under load, and a partial always, the --beam-size."""
    monkeypatch.setattr(engine.decoder, "config", engine.config.replace(spare_beam_size=5))
    counting = CountingModel(engine.decoder.model.model)
    monkeypatch.setattr(engine.decoder.model, "model", counting)
    final, partial = req("vm-mismatch"), req("vm-mismatch", Priority.PARTIAL)
    texts = [engine.decode_batch([r], spare=spare)[0].text
             for r, spare in ((final, True), (final, False), (partial, True))]
    assert counting.beams == [5, 1, 1]
    for text in texts:
        assert word_errors(TRANSCRIPTS["vm-mismatch"], text) <= 2, text  # "password", "re-enter"


def test_finals_in_a_batch_keep_the_beam_beside_greedy_partials(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `final_beam`, each final at a pause in a batch gets the spare-capacity beam and each
    partial its greedy decode: one encoder pass, one generate call per beam (and for the
    partials), and every text what its request gets decoded alone with that beam. A final cut
    out of run-on speech (spare_ok False) stays greedy. Finals are delivered before partials."""
    monkeypatch.setattr(engine.decoder, "config", engine.config.replace(spare_beam_size=5))
    names = ["vm-mismatch", "transfer", "conf-onlyperson", "tt-weasels"]
    requests = [req(names[0], session="a"), req(names[1], Priority.PARTIAL, session="b"),
                dataclasses.replace(req(names[2], session="c"), spare_ok=False),
                req(names[3], session="d")]
    assert len({engine.batch_key(r) for r in requests}) == 1
    alone = [engine.decode_batch([r], spare=r.priority is Priority.FINAL and r.spare_ok)[0].text
             for r in requests]
    counting = CountingModel(engine.decoder.model.model)
    monkeypatch.setattr(engine.decoder.model, "model", counting)
    batched = engine.decode_batch(requests, final_beam=True)
    assert counting.calls["encode"] == 1
    # the cut final greedy, the two finals with the beam, the partial greedy and last
    assert counting.beams == [1, 5, 1] or counting.beams == [5, 1, 1]
    assert [b.text for b in batched] == alone
    counting.beams.clear()
    engine.decode_batch(requests)  # no final beam: every item greedy, finals first
    assert counting.beams == [1, 1]
    order: list[int] = []
    engine.decode_batch(requests, final_beam=True, delivered=lambda i, _: order.append(i))
    assert sorted(order) == [0, 1, 2, 3] and order[-1] == 1  # the partial's words come last


def test_a_batch_of_eight_with_different_prompts_is_one_model_call(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight sessions' own prompts, different words of one length: one encoder pass, one
    generate call, one alignment, and each request's text what it gets decoded alone."""
    names = ["agent-alreadyon", "tt-weasels", "conf-onlyperson", "transfer",
             "vm-nobodyavail", "auth-incorrect", "vm-mismatch", "pbx-invalid"]
    requests = [dataclasses.replace(req(n, session=n), initial_prompt=f"Extension {i}.")
                for i, n in enumerate(names)]
    assert len({engine.batch_key(r) for r in requests}) == 1
    alone = [engine.decode_batch([r])[0].text for r in requests]
    counting = CountingModel(engine.decoder.model.model)
    monkeypatch.setattr(engine.decoder.model, "model", counting)
    batched = engine.decode_batch(requests)
    assert counting.calls == {"encode": 1, "generate": 1, "align": 1, "detect_language": 0}
    assert [b.text for b in batched] == alone
    # the prompts cost tiny.en words ("Weasles", "re-enter"), the same ones in every run
    most = [0, 1, 0, 0, 0, 0, 2, 1]
    errors = [word_errors(TRANSCRIPTS[n], b.text) for n, b in zip(names, batched, strict=True)]
    assert all(e <= m for e, m in zip(errors, most, strict=True)), (errors, alone)
    assert all(b.cost_s == pytest.approx(b.decode_s / len(names)) for b in batched)


async def test_prompts_of_different_lengths_are_batched_apart_one_call_each(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """CTranslate2 cannot take prompts of different lengths in one generate call unpadded
    (batching.py): the batch key, computed at submit time, keeps them apart, so every batch
    the scheduler forms is one generate call."""
    monkeypatch.setattr(engine.scheduler, "max_batch_size", 8)
    counting = CountingModel(engine.decoder.model.model)
    monkeypatch.setattr(engine.decoder.model, "model", counting)
    held = HeldWorkers(engine, monkeypatch)
    await held.hold()
    prompts = [None, "Extension 1.", None, "The extension you asked for.", "Extension 2.", None]
    requests = [dataclasses.replace(req("tt-weasels", session=str(i)), initial_prompt=p)
                for i, p in enumerate(prompts)]
    waiting = [asyncio.create_task(engine.transcribe(r)) for r in requests]
    await asyncio.sleep(0)
    assert engine.queue_depth == len(prompts)
    await held.release()
    results = await asyncio.gather(*waiting)
    assert sorted(map(sorted, held.batches_after_blockers)) == [["0", "2", "5"], ["1", "4"],
                                                                ["3"]]
    assert counting.calls["generate"] == len(held.batches)  # the blockers' batches too
    # a prompt makes tiny.en spell one word "Weasles"; without one it is word-perfect
    assert all(r is not None and word_errors(TRANSCRIPTS["tt-weasels"], r.text) <= (p is not None)
               for r, p in zip(results, prompts, strict=True))


def test_with_timestamp_tokens_too_a_last_sentence_said_thrice_is_kept_once(
        engine: Engine) -> None:
    """Timestamp tokens do not always stop it: vm-mismatch with "Weasels have eaten our phone
    system" as context came back with "Please try again." three times, the copies aligned to
    no time at the speech's end."""
    request = DecodeRequest(audio=clip_at("vm-mismatch", 16000), priority=Priority.FINAL,
                      session="s", language="en", prompt=TRANSCRIPTS["tt-weasels"],
                      word_timestamps=True)
    result = engine.decode_batch([request])[0]
    assert result.text.count("try again") == 1, result.text
    assert word_errors(TRANSCRIPTS["vm-mismatch"], result.text) <= 2, result.text  # "re-enter"
    assert result.text == "".join(w.word for w in result.words).strip()


def test_on_cuda_a_batch_gates_its_requests_side_by_side(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the speech gate (and the mel features) of a batch's requests run at once, not
    one after another while the GPU waits: two gates meet inside `_has_speech`. On CPU, one
    after another (the cores are the model's)."""
    assert prep_threads("cuda", 16) == 8 and prep_threads("cpu", 16) == 1
    pool = ThreadPoolExecutor(prep_threads("cuda", 2))
    monkeypatch.setattr(engine.decoder, "_prep", pool)
    together = threading.Barrier(2, timeout=10)
    has_speech = engine.decoder._has_speech

    def meeting(audio: np.ndarray) -> bool:
        together.wait()
        return has_speech(audio)

    monkeypatch.setattr(engine.decoder, "_has_speech", meeting)
    with pool:
        results = engine.decode_batch([req("tt-weasels", session="a"),
                                       req("music-macroform-cold_day", session="b")])
    assert word_errors(TRANSCRIPTS["tt-weasels"], results[0].text) == 0
    assert results[1].text == ""


def test_audio_already_found_voiced_skips_the_speech_gate(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Silero gate (about 2 ms a second of audio on CPU, a third of a tiny.en decode on a
    GPU) runs once per utterance: a request whose session already got words from that
    utterance's audio says `voiced` and is decoded without it."""
    gated: list[int] = []
    has_speech = engine.decoder._has_speech

    def counting(audio: np.ndarray) -> bool:
        gated.append(len(audio))
        return has_speech(audio)

    monkeypatch.setattr(engine.decoder, "_has_speech", counting)
    first, again = engine.decode_batch([req("tt-weasels"),
                                        dataclasses.replace(req("tt-weasels"), voiced=True)])
    assert len(gated) == 1
    assert first.text == again.text and word_errors(TRANSCRIPTS["tt-weasels"], again.text) == 0
