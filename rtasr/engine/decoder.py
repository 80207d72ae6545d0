"""The model itself, synchronously: loading and warming it, and decoding a batch of requests
in one model call. Part of the engine: with engine.py, the only modules that import
faster-whisper and CTranslate2.

`BatchDecoder` knows nothing of the scheduler, the workers or the event loop: engine.py's
workers call `decode_batch` (the Ray deployment's `Asr` too: it calls `Engine.transcribe`,
whose workers end here), which gates, encodes, detects languages, generates and aligns,
consuming faster-whisper's lazy generators in the calling thread. Split off it, and free of
faster-whisper: batch_plan.py (which requests share one model call), transcript.py (a
decode's segments made a Transcript) and repeats.py (a loop cut).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import SAMPLE_RATE_HZ, Config
from ..core.audio import Audio
from ..core.engine_api import EMPTY, DecodeRequest, ModelInfo, Priority, Transcript, choose_language
from ..core.protocol import Task
from ..errors import ConfigError
from .batch_plan import group_indices, prompt_position, share
from .repeats import cut_loop
from .transcript import SENTENCE_ENDS, transcript

log = logging.getLogger(__name__)
logging.getLogger("faster_whisper").setLevel(logging.WARNING)

HOP = 160  # samples per mel frame
# faster-whisper's defaults: punctuation merged into the word before or after it
_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"  # noqa: RUF001
_DETECTED_KEPT = 5  # languages kept from a detection (Transcript.detected)
N_FRAMES = 3000  # mel frames in Whisper's 30 s window
_CAP_SLACK_TOKENS = 4  # --max-tokens-per-s: room for the timestamps and the end token


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Where the model comes from: a local CTranslate2 directory or a faster-whisper name
    (engine.resolve_model)."""

    source: str
    name: str
    local: bool


class BatchDecoder:
    """One loaded WhisperModel and everything a decode needs of it (tokenizers, the suppressed
    tokens, the languages it knows); thread-safe, for every worker at once."""

    def __init__(self, config: Config, spec: ModelSpec) -> None:
        self.config = config  # effective (engine.effective_config)
        self.spec = spec
        self.language: str | None = config.language
        self.multilingual = False
        self.model: Any = None  # faster-whisper's WhisperModel, once loaded
        self._tokenizers: dict[tuple[str, Task], Any] = {}
        self._tokenizers_lock = threading.Lock()  # the event loop's batch_key and the workers
        self.languages: list[str] = ["en"]  # language codes the model transcribes
        self._suppress: list[int] = []
        self._prep: ThreadPoolExecutor | None = None  # None: in the calling thread
        self._counts_lock = threading.Lock()  # workers count side by side
        self.decoded_items = 0
        self.detections = 0  # requests whose language the decoder detected

    @property
    def info(self) -> ModelInfo:
        """The model as session set-up sees it (gateway.py); loaded models only."""
        return ModelInfo(name=self.spec.name, multilingual=self.multilingual,
                         language=self.language, languages=tuple(self.languages))

    def load(self) -> None:
        """Load the model and warm it up (blocking). Raises ConfigError for a model that
        cannot be loaded or a --language it does not know."""
        from faster_whisper import WhisperModel
        from faster_whisper.transcribe import get_suppressed_tokens

        t0 = time.perf_counter()
        try:
            self.model = WhisperModel(
                self.spec.source,
                device=self.config.device,
                compute_type=self.config.compute_type,
                cpu_threads=self.config.cpu_threads,
                num_workers=self.config.workers,
                local_files_only=self.spec.local,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ConfigError(f"cannot load model {self.spec.name}: {exc}") from None
        self.multilingual = bool(self.model.model.is_multilingual)
        if not self.multilingual:
            self.language = "en"
        hf = self.model.hf_tokenizer  # faster-whisper lists yue even for models without it
        self.languages = sorted(code for code in self.model.supported_languages
                                if hf.token_to_id(f"<|{code}|>") is not None)
        if self.language not in (None, *self.languages):
            raise ConfigError(f"--language {self.language}: model {self.spec.name} does not "
                              f"know it ({_listed(self.languages)})")
        self._suppress = list(get_suppressed_tokens(self._tokenizer(self.language), [-1]))
        log.info(
            "loaded %s on %s (%s, %d workers x %d threads, batches of up to %d) in %.1f s",
            self.spec.name, self.config.device, self.config.compute_type, self.config.workers,
            self.config.cpu_threads, self.config.max_batch_size, time.perf_counter() - t0,
        )
        threads = prep_threads(self.config.device, os.cpu_count() or 1)
        self._prep = ThreadPoolExecutor(threads, "rtasr-prep") if threads > 1 else None
        self._warm_up()

    def _warm_up(self) -> None:
        """Run every stage of the model once, so the first session's decode is not slow."""
        t0 = time.perf_counter()
        audio = _warmup_audio()
        self._has_speech(audio)  # loads the Silero model too
        warm = DecodeRequest(audio=audio, priority=Priority.FINAL, session="warmup",
                       language=self.language, word_timestamps=True)
        self.decode_batch([warm] * min(2, self.config.max_batch_size), gate=False)
        log.info("warmed up in %.2f s", time.perf_counter() - t0)

    def close(self) -> None:
        if self._prep is not None:
            self._prep.shutdown()
            self._prep = None

    def batch_key(self, request: DecodeRequest, prompt_ids: list[int] | None = None
                  ) -> tuple[object, ...]:
        """Computed when a request is submitted: requests with equal keys share one model call
        (one encoder pass; one generate call per beam size), whatever their languages and
        tasks: the encoder window and the prompt's length (batch_plan.py). `prompt_ids`: the
        request's prompt_tokens, when the caller has them already."""
        if prompt_ids is None:
            prompt_ids = self.prompt_tokens(request)
        return (self._window_frames(len(request.audio)), prompt_position(len(prompt_ids)))

    def prompt_tokens(self, request: DecodeRequest) -> list[int]:
        """The prompt's text before <|startoftranscript|>: the session's own prompt (bounded),
        then as much of the running context as fits in half the decoder's window (as
        faster-whisper bounds it). The same tokens in every language and task (one
        vocabulary), so the engine computes them once, when a request is submitted."""
        tok = self._tokenizer(self.language)
        room = self.model.max_length // 2 - 1
        prompt_ids: list[int] = []
        if request.initial_prompt:
            prompt_ids = tok.encode(" " + request.initial_prompt.strip())[: room // 2]
        if request.prompt and room > len(prompt_ids):
            prompt_ids += tok.encode(" " + request.prompt.strip())[-(room - len(prompt_ids)):]
        return prompt_ids

    def transcribe_whole(self, audio: Audio, *, language: str | None, task: Task = "transcribe",
                         beam_size: int = 5) -> str:
        """`audio` through faster-whisper's own file transcription with its defaults (30 s
        windows that continue where the last one stopped, temperature fallback, the text so far
        as the prompt): the yardstick's decode (yardstick.py), not a path the server serves.
        Call it from one thread, beside the workers."""
        segments, _ = self.model.transcribe(audio, language=language, task=task,
                                            beam_size=beam_size)
        return " ".join(segment.text.strip() for segment in segments)

    # the model ---------------------------------------------------------------------------

    def _window_frames(self, samples: int, spare: bool = False) -> int:
        """Mel frames the encoder sees: the full 30 s window, or a shorter one that fits
        (`spare`: the wider window a final gets while the engine has capacity to spare)."""
        full = N_FRAMES
        window_s = self.config.spare_encoder_window_s if spare else self.config.encoder_window_s
        if not window_s:
            return full
        frames = samples // HOP + 1
        step = int(window_s * 100)
        return min(full, -(-frames // step) * step)

    def _tokenizer(self, language: str | None, task: Task = "transcribe") -> Any:
        from faster_whisper.tokenizer import Tokenizer

        key = (language or "en", task)
        with self._tokenizers_lock:
            tok = self._tokenizers.get(key)
            if tok is None:
                tok = Tokenizer(self.model.hf_tokenizer, self.multilingual, task=task,
                                language=key[0])
                self._tokenizers[key] = tok
        return tok

    def decode_batch(self, requests: list[DecodeRequest], *, gate: bool = True, spare: bool = False,
                     final_beam: bool = False, prompt_ids: Sequence[list[int]] | None = None,
                     delivered: Callable[[int, Transcript], None] | None = None
                     ) -> list[Transcript]:
        """Decode requests that share a batch key in one model call; one Transcript each.

        The same code path decodes a batch of one, so a request gets the same text alone or
        batched: every item is padded to the same encoder window either way, and each is
        generated with its own beam. `spare`: a lone final on spare capacity, which gets the
        spare-capacity window and beam (--spare-encoder-window-s, --spare-beam-size);
        `final_beam`: a lone final with first words riding in its batch, which gets the
        spare-capacity beam in the batch's window (so would every final at a pause in the
        batch). `prompt_ids`: each request's prompt_tokens, when the caller has them (the
        engine, from submit time). `delivered(i, transcript)`: called as each request's
        transcript is ready, finals' before partials' (their generate calls run first), so a
        final need not wait for the partials riding in its batch.
        """
        if prompt_ids is None:
            prompt_ids = [self.prompt_tokens(r) for r in requests]
        t0 = time.perf_counter()
        results: list[Transcript] = [EMPTY] * len(requests)
        # the speech gate and the mel features: on CUDA the batch's requests side by side
        # (numpy and onnxruntime release the GIL) rather than one after another (prep_threads)
        mels = (list(self._prep.map(lambda r: self._prepare(r, gate), requests))
                if self._prep is not None and len(requests) > 1
                else [self._prepare(r, gate) for r in requests])
        todo = [(i, mel) for i, mel in enumerate(mels) if mel is not None]
        if todo:
            ready = None if delivered is None else (
                lambda j, result: delivered(todo[j][0], result))
            decoded = self._decode([requests[i] for i, _ in todo], [mel for _, mel in todo],
                                   [prompt_ids[i] for i, _ in todo], spare, final_beam, ready)
            for (i, _), result in zip(todo, decoded, strict=True):
                results[i] = result
        with self._counts_lock:
            self.decoded_items += len(todo)
        spent = time.perf_counter() - t0
        cost = share(spent, len(requests))
        return [dataclasses.replace(r, decode_s=spent, cost_s=cost) for r in results]

    def _prepare(self, request: DecodeRequest, gate: bool) -> np.ndarray | None:
        """The request's mel features, or None when the speech gate finds too little voice."""
        if (gate and self.config.no_speech_gate and not request.voiced
                and not self._has_speech(request.audio)):
            return None
        mel: np.ndarray = self.model.feature_extractor(request.audio)
        return mel

    def _decode(self, requests: list[DecodeRequest], mels: list[np.ndarray],
                prompt_ids: list[list[int]], spare: bool = False, final_beam: bool = False,
                ready: Callable[[int, Transcript], None] | None = None) -> list[Transcript]:
        """One encoder pass; the language detected on it for the requests that have none, its
        token put in their prompts; then one generate call per beam size for requests that
        share a batch key (whatever their languages and tasks), and per prompt length for a
        caller that mixes them (batch_plan.py)."""
        from faster_whisper.audio import pad_or_trim

        model = self.model
        window = self._window_frames(max(len(r.audio) for r in requests), spare)
        features, frames = [], []
        for mel in mels:
            n = min(mel.shape[-1] - 1, window)
            frames.append(n)
            features.append(pad_or_trim(mel[:, :n], window))
        batch = np.stack(features)
        encoded = model.encode(batch)
        languages, detected = self._languages(requests, encoded, batch)
        toks = [self._tokenizer(language, r.task)
                for r, language in zip(requests, languages, strict=True)]
        prompts = [model.get_prompt(tok, tokens,
                                    without_timestamps=not self.config.timestamp_tokens)
                   for tokens, tok in zip(prompt_ids, toks, strict=True)]
        beams = [self._beam(r, spare or final_beam) for r in requests]
        results: list[Transcript] = [EMPTY] * len(requests)
        # finals' generate calls first: a final's words need not wait for riding partials
        groups = group_indices([(r.priority is Priority.PARTIAL, p.index(toks[0].sot), beam)
                                for r, p, beam in zip(requests, prompts, beams, strict=True)])
        for _, idx in sorted(groups.items(), key=lambda group: bool(group[0][0])):  # type: ignore[index]
            if len(idx) == len(requests):
                part = encoded
            elif self.config.device == "cpu":
                kept = np.ascontiguousarray(np.asarray(encoded)[idx])  # alive until generated
                part = _storage(kept)
            else:  # no slicing on the GPU without a tensor library: encode the group again
                part = model.encode(batch[idx])
            done = self._generate(part, [requests[i] for i in idx], [prompts[i] for i in idx],
                                  [frames[i] for i in idx], [toks[i] for i in idx], beams[idx[0]])
            for i, result in zip(idx, done, strict=True):
                results[i] = dataclasses.replace(result, language=languages[i],
                                                 detected=detected[i])
                if ready is not None:
                    ready(i, results[i])
        return results

    def _languages(self, requests: list[DecodeRequest], encoded: Any, batch: np.ndarray
                   ) -> tuple[list[str], list[tuple[tuple[str, float], ...]]]:
        """Each request's language: its own, the server's, or detected from its audio (one
        decoder step over the encoder output the decode uses anyway) and weighed with the
        session's vote (decoding.choose_language); and, for those detected, the likeliest
        languages with their probabilities. A request heard with the utterance before's audio
        is detected on its own audio alone: over the whole window, a French reply after an
        Italian turn is detected as Italian (0.77) and decoded as Italian words."""
        languages = [r.language or self.language for r in requests]
        detected: list[tuple[tuple[str, float], ...]] = [()] * len(requests)
        todo = [i for i, language in enumerate(languages) if language is None]
        if todo:
            scores: dict[int, Any] = {}
            if any(not requests[i].context_samples for i in todo):
                scores.update(enumerate(self.model.model.detect_language(encoded)))
            for i in todo:
                if requests[i].context_samples:
                    scores[i] = self.model.model.detect_language(
                        self._own(encoded, batch, i, requests[i].context_samples))[0]
            for i in todo:
                detected[i] = tuple((token[2:-2], round(prob, 4))  # "<|xx|>"
                                    for token, prob in scores[i][:_DETECTED_KEPT])
                languages[i] = choose_language(detected[i], requests[i].language_prior)
            with self._counts_lock:
                self.detections += len(todo)
        return [language or "en" for language in languages], detected

    def _own(self, encoded: Any, batch: np.ndarray, i: int, context_samples: int) -> Any:
        """Row `i`'s encoder output after its first `context_samples` of audio (the encoder
        makes one frame of every two mel frames): sliced on the CPU, the rest of its mel
        frames encoded again, padded to the window, on the GPU."""
        mel_from = context_samples // HOP
        if self.config.device == "cpu":
            return _storage(np.ascontiguousarray(np.asarray(encoded)[i:i + 1, mel_from // 2:]))
        from faster_whisper.audio import pad_or_trim

        own = pad_or_trim(batch[i][:, mel_from:], batch.shape[-1])
        return self.model.encode(own[None])

    def _beam(self, request: DecodeRequest, spare: bool) -> int:
        """The request's beam: its own, or the spare-capacity beam for a final at a pause
        (`spare`: the engine has the time for it)."""
        if spare and request.priority is Priority.FINAL and request.spare_ok:
            return max(request.beam_size, self.config.spare_beam_size)
        return request.beam_size

    def _generate(self, encoded: Any, requests: list[DecodeRequest], prompts: list[list[int]],
                  frames: list[int], toks: list[Any], beam: int) -> list[Transcript]:
        text_only = not self.config.timestamp_tokens
        outputs = self.model.model.generate(
            encoded, prompts, beam_size=beam, patience=1.0,
            length_penalty=1.0, return_scores=True,
            max_length=self._max_length(prompts, frames, all(r.capped for r in requests)),
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self._suppress,
            max_initial_timestamp_index=50,
        )
        items = [self._segments(out, n, tok)
                 for out, n, tok in zip(outputs, frames, toks, strict=True)]
        # Without timestamp tokens the words' times are the only sign of where speech ended.
        if text_only or any(r.word_timestamps for r in requests):
            self._align(items, toks, encoded, frames)
        return [transcript(segments, tok.decode, tok.language_code, r.word_timestamps,
                           from_words=text_only)
                for segments, tok, r in zip(items, toks, requests, strict=True)]

    def _segments(self, out: Any, n: int, tok: Any) -> list[dict[str, Any]]:
        """One item's generated tokens as faster-whisper's segments, loops cut, the silent and
        the still repetitive emptied."""
        from faster_whisper.transcribe import get_compression_ratio

        tokens = out.sequences_ids[0]
        avg_logprob = out.scores[0] * len(tokens) / (len(tokens) + 1)
        text = tok.decode(tokens).strip()
        silent = out.no_speech_prob > 0.6 and avg_logprob < -1.0
        if not silent and text and get_compression_ratio(text) > 2.4:
            tokens = cut_loop(tokens, lambda t: tok.decode([t]).rstrip().endswith(
                SENTENCE_ENDS), lambda t: t >= tok.eot)  # a loop: the words before it
            text = tok.decode(tokens).strip()
        if silent or not text or get_compression_ratio(text) > 2.4:
            tokens = []
        segments, _, _ = self.model._split_segments_by_timestamps(
            tokenizer=tok, tokens=tokens, time_offset=0.0, segment_size=n,
            segment_duration=n / 100, seek=0)
        # A segment the model itself places after the audio's end was heard in the padding:
        # with short windows tiny.en sometimes repeats the utterance there.
        kept = [seg for seg in segments if seg["start"] < n / 100]
        return kept or [dict(segments[0], tokens=[])]

    def _align(self, items: list[list[dict[str, Any]]], toks: list[Any], encoded: Any,
               frames: list[int]) -> None:
        """Word times into `items`' segments. CTranslate2 aligns with one start sequence
        (<|startoftranscript|>, language, task) per call: one call per (language, task) in the
        batch (one for an English-only model), each over the whole batch's encoder output with
        the other items' words left out, so the encoder output is never sliced or recomputed."""
        for idx in group_indices([tuple(tok.sot_sequence) for tok in toks]).values():
            mine = set(idx)
            view = [segs if i in mine else [dict(segs[0], tokens=[])]
                    for i, segs in enumerate(items)]
            self.model.add_word_timestamps(view, toks[idx[0]], encoded, frames, _PREPEND,
                                            _APPEND, last_speech_timestamp=0.0)

    def _max_length(self, prompts: list[list[int]], frames: list[int], capped: bool) -> int:
        """CTranslate2's max_length: the model's 448, or with --max-tokens-per-s (for
        `capped` partials, also --partial-max-tokens-per-s: the lower) that many tokens per
        second of the longest audio, plus a few for the timestamps and the end. CTranslate2
        generates at most max_length minus the prompt, and at most half of it."""
        limit: int = self.model.max_length
        caps = [self.config.max_tokens_per_s,
                self.config.partial_max_tokens_per_s if capped else 0.0]
        per_s = min((cap for cap in caps if cap), default=0.0)
        if not per_s:
            return limit
        generated = math.ceil(per_s * max(frames) / 100) + _CAP_SLACK_TOKENS
        return min(limit, max(max(len(p) for p in prompts) + generated, 2 * generated))

    def _has_speech(self, audio: Audio) -> bool:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        spans = get_speech_timestamps(
            audio, VadOptions(min_silence_duration_ms=100, speech_pad_ms=0)
        )
        voiced: int = sum(s["end"] - s["start"] for s in spans)
        return voiced * 1000 >= self.config.min_voiced_ms * SAMPLE_RATE_HZ


def prep_threads(device: str, cpus: int) -> int:
    """Threads for the speech gate and the mel features of a batch's requests. On CUDA the CPU
    cores idle while the GPU decodes: up to 8, side by side. On CPU the cores are the model's
    (Config.resolved), and 2 threads on this 2-vCPU VM took a batch of 8 longer to prepare than
    one (0.19 s against 0.10 s): one after another in the worker's thread, as before."""
    return min(8, cpus) if device == "cuda" else 1


def _listed(codes: list[str]) -> str:
    return f"it knows {len(codes)}: {' '.join(codes)}"


def _storage(array: np.ndarray) -> Any:
    import ctranslate2

    return ctranslate2.StorageView.from_array(array)


def _warmup_audio() -> Audio:
    """A second of a vowel-like buzz, to run every stage of the model once."""
    t = np.arange(SAMPLE_RATE_HZ, dtype=np.float32) / SAMPLE_RATE_HZ
    f0 = 140 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.1 * wave * np.hanning(len(t))).astype(np.float32)

