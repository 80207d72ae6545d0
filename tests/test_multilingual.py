"""Multilingual Whisper base (from PyPI, rtasr[multilingual]) on real Spanish and French speech:
languages given and detected, translation, a prompt, batching across languages, and refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import numpy as np
import pytest

from rtasr.config import Config
from rtasr.core.engine_api import DecodeRequest, Priority, Transcript
from rtasr.engine import Engine
from rtasr.eval.wer import wer
from rtasr.server import Server

from .helpers import (
    DATA,
    CountingModel,
    assert_close_to_yardstick,
    assert_max_errors,
    clip_at,
    exchange,
    silence,
    stream,
    trimmed,
)

TEXTS: dict[str, str] = json.loads((DATA / "transcripts-multilingual.json").read_text())
SPANISH, FRENCH = "es/conf-unlockednow", "fr/conf-now-unmuted"


def request(name: str, **fields: object) -> DecodeRequest:
    return DecodeRequest(audio=clip_at(name, 16000), priority=Priority.FINAL, session=name,
                   **fields)  # type: ignore[arg-type]


async def decode(engine: Engine, name: str, **fields: object) -> Transcript:
    result = await engine.transcribe(request(name, **fields))
    assert result is not None
    return result


@pytest.mark.parametrize("name", [SPANISH, FRENCH])
async def test_spanish_and_french_given_and_detected(base: Engine, name: str) -> None:
    language = name[:2]
    given = await decode(base, name, language=language)
    detected = await decode(base, name)
    assert given.language == detected.language == language
    # base gets the Spanish clip word-perfect; the French one alone ends "discrète" for
    # "discret" (batched beside the Spanish one it gets it right)
    for result in (given, detected):
        assert_max_errors(TEXTS[name], result.text, int(name == FRENCH))


async def test_spanish_translated_to_english(base: Engine) -> None:
    result = await decode(base, SPANISH, task="translate")
    words = result.text.lower()
    assert "conference" in words and "unlocked" in words, result.text
    assert result.language == "es"


async def test_a_prompt_fixes_a_misrecognized_term(base: Engine) -> None:
    name = "fr/vm-rec-name"  # "... appuyer sur dièse": base hears "sur Diel"
    plain = await decode(base, name, language="fr")
    prompted = await decode(base, name, language="fr", initial_prompt="timbre sonore, dièse")
    assert "dièse" not in plain.text.lower(), plain.text
    assert "dièse" in prompted.text.lower(), prompted.text
    assert wer(TEXTS[name], prompted.text) <= wer(TEXTS[name], plain.text)  # and no worse


async def test_auto_detected_languages_share_one_model_call(base: Engine) -> None:
    # the scheduler counts a batch when a worker takes it, before its results resolve (the
    # engine's observers run after, so a test cannot wait on them)
    sched, detections = base.scheduler, base.detections
    batches, jobs = sched.batches, sched.batched_jobs
    spanish, french = await asyncio.gather(decode(base, SPANISH), decode(base, FRENCH))
    assert (sched.batches - batches, sched.batched_jobs - jobs) == (1, 2)
    assert base.detections == detections + 2
    assert (spanish.language, french.language) == ("es", "fr")
    assert_max_errors(TEXTS[SPANISH], spanish.text, 0)
    assert_max_errors(TEXTS[FRENCH], french.text, 0)


async def test_sessions_in_two_languages_through_the_server(base: Engine,
                                                           base_server: Server) -> None:
    def audio(name: str):  # type: ignore[no-untyped-def]
        import numpy as np

        return np.concatenate([silence(0.3, 16000), clip_at(name, 16000), silence(1, 16000)])

    spanish, french = await asyncio.gather(
        stream(base_server.url, audio(SPANISH), speed=8.0),
        stream(base_server.url, audio(FRENCH), speed=8.0, query="task=transcribe"))
    for result, name in ((spanish, SPANISH), (french, FRENCH)):
        finals = result.of("final")
        assert finals and {f["language"] for f in finals} == {name[:2]}
        assert_close_to_yardstick(base, result.text, [name], references=TEXTS,
                                  language=name[:2])


async def test_ready_says_language_and_task(base_server: Server) -> None:
    messages, _ = await exchange(f"{base_server.url}?language=es&task=translate",
                                 json.dumps({"type": "end"}))
    assert messages[0]["type"] == "ready"
    assert (messages[0]["language"], messages[0]["task"]) == ("es", "translate")


async def test_an_unknown_language_is_refused_at_the_handshake(base_server: Server) -> None:
    messages, code = await exchange(f"{base_server.url}?language=xx")
    assert code == 1008 and messages[0]["code"] == "bad_parameter"
    assert "does not know language 'xx'" in messages[0]["message"]


async def test_an_english_only_model_refuses_translation(server: Server) -> None:
    messages, code = await exchange(f"{server.url}?task=translate")
    assert code == 1008 and "English-only" in messages[0]["message"]


async def test_an_elided_word_is_one_word(base: Engine) -> None:
    """faster-whisper splits "n'est" into " n" and "'est": the words must still read as the
    text does (a final's text is its words joined by spaces)."""
    result = await decode(base, FRENCH, language="fr", word_timestamps=True)
    assert " ".join(w.word.strip() for w in result.words) == result.text
    assert "n'est" in [w.word.strip() for w in result.words]


async def test_a_session_keeps_its_language_where_one_utterance_alone_is_misheard(
        base: Engine, base_server: Server) -> None:
    """Base hears this Spanish clip alone as Italian ("forse volentente di nuovo"); after two
    Spanish utterances the session's vote (LanguageVotes) decodes it in Spanish."""
    name = "es/please-try-again"
    alone = await decode(base, name)
    assert alone.language == "it", alone.text
    pause = silence(1.0, 16000)
    audio = np.concatenate([pause, trimmed(SPANISH), pause, trimmed(SPANISH), pause,
                            trimmed(name), pause])
    result = await stream(base_server.url, audio, speed=2.0)
    finals = result.of("final")
    assert [f["language"] for f in finals] == ["es"] * 3, result.text
    assert_close_to_yardstick(base, finals[-1]["text"], [name], references=TEXTS, language="es")


async def test_a_server_that_loads_its_own_model_knows_its_languages() -> None:
    """`rtasr serve --model base`: the server loads the model after it is built, and its
    handshake must see the loaded model (not the English-only guess made before loading)."""
    async with Server(Config(host="127.0.0.1", port=0, model="base", workers=1)) as srv:
        messages, _ = await exchange(f"{srv.url}?language=es&task=translate",
                                     json.dumps({"type": "end"}))
    assert messages[0]["type"] == "ready", messages[0]
    assert (messages[0]["language"], messages[0]["task"]) == ("es", "translate")


def test_eight_languages_tasks_and_prompts_mixed_are_one_generate_call(
        base: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spanish and French, given and detected, transcribed and translated, each with its own
    prompt (of one length): one encoder pass, one language detection, one generate call (the
    detected languages' tokens put in their prompts), one alignment per (language, task);
    each text what the request gets decoded alone."""
    shapes: list[tuple[str, dict[str, object]]] = [
        (SPANISH, {"language": "es"}), (FRENCH, {"language": "fr"}), (SPANISH, {}),
        (FRENCH, {}), (SPANISH, {"task": "translate"}), ("fr/vm-rec-name", {"language": "fr"}),
        ("es/please-try-again", {"language": "es"}), (FRENCH, {"task": "translate"})]
    requests = [request(name, initial_prompt=f"Extension {i}.", word_timestamps=True, **fields)
                for i, (name, fields) in enumerate(shapes)]
    assert len({base.batch_key(r) for r in requests}) == 1
    alone = [base.decode_batch([r])[0] for r in requests]
    counting = CountingModel(base.decoder.model.model)
    monkeypatch.setattr(base.decoder.model, "model", counting)
    batched = base.decode_batch(requests)
    pairs = {(r.language, r.task) for r in requests}
    assert [b.language for b in batched] == ["es", "fr", "es", "fr", "es", "fr", "es", "fr"]
    assert counting.calls == {"encode": 1, "detect_language": 1, "generate": 1,
                              "align": len({(b.language, r.task)
                                            for b, r in zip(batched, requests, strict=True)})}
    assert len(pairs) > 1
    assert [b.text for b in batched] == [a.text for a in alone]
    assert "conference" in batched[4].text.lower(), batched[4].text  # translated


async def test_a_reply_heard_after_another_language_is_detected_on_its_own_audio(
        base: Engine) -> None:
    """An utterance soon after the one before hears its audio (--context-s). In a
    conversation in two languages that audio is another language's: detected over the whole
    window, a French reply after an Italian turn is detected as Italian, and its words are
    written in Italian. It is detected on its own audio."""
    italian, french = clip_at("it/conf-onlyperson", 16000), clip_at(FRENCH, 16000)
    heard = np.concatenate([italian, silence(0.4, 16000), french])
    result = await base.transcribe(DecodeRequest(
        audio=heard, priority=Priority.FINAL, session="two languages", word_timestamps=True,
        context_samples=len(italian) + 6400))
    assert result is not None and result.language == "fr"
    own = " ".join(w.word for w in result.words if w.start >= len(italian) / 16000)
    assert_max_errors(TEXTS[FRENCH], own, 2)


def test_the_gpu_path_detects_on_the_audio_after_the_context_as_the_cpu_path(
        base: Engine) -> None:
    """On the GPU the encoder output cannot be sliced without a tensor library: the mel
    frames after the context are encoded again. Both give the reply's own language."""
    from faster_whisper.audio import pad_or_trim

    decoder = base.decoder
    italian, french = clip_at("it/conf-onlyperson", 16000), clip_at(FRENCH, 16000)
    heard = np.concatenate([italian, silence(0.4, 16000), french])
    mel = decoder.model.feature_extractor(heard)
    batch = pad_or_trim(mel[:, :1000], 1000)[None]
    encoded = decoder.model.encode(batch)
    context = len(italian) + 6400
    found = {}
    for device in ("cpu", "cuda"):
        decoder.config = dataclasses.replace(decoder.config, device=device)
        try:
            own = decoder._own(encoded, batch, 0, context)
            found[device] = decoder.model.model.detect_language(own)[0][0]
        finally:
            decoder.config = dataclasses.replace(decoder.config, device="cpu")
    assert found["cpu"][0] == found["cuda"][0] == "<|fr|>", found
    whole = decoder.model.model.detect_language(encoded)[0][0]
    assert whole[0] == "<|it|>", whole  # what the whole window hears
