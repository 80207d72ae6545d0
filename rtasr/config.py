"""The one configuration object, built once by the CLI (or a test) and passed everywhere."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError

Device = Literal["auto", "cpu", "cuda"]

SAMPLE_RATE_HZ = 16_000
"""The model's sample rate: every stream is resampled to it on arrival."""

ENGINE_FIELDS = ("model", "device", "compute_type", "language", "beam_size", "workers",
                 "cpu_threads", "context_chars", "no_speech_gate", "min_voiced_ms",
                 "partial_max_wait_ms", "max_batch_size", "batch_window_ms", "encoder_window_s",
                 "spare_encoder_window_s", "spare_beam_size", "max_tokens_per_s",
                 "timestamp_tokens")
"""The "Model and engine" fields: the engine's to resolve, where the model runs (served_with)."""


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything `rtasr serve` can be told. Vary it in tests with `dataclasses.replace`."""

    # Transport
    host: str = "0.0.0.0"
    port: int = 8000
    max_frame_bytes: int = 1 << 20
    wyoming_port: int | None = None  # Home Assistant's Wyoming protocol on TCP; None: off

    # Model and engine
    model: str | None = None
    device: Device = "auto"
    compute_type: str = "auto"
    language: str | None = None
    beam_size: int = 0
    workers: int = 0
    cpu_threads: int = 0
    context_chars: int = -1
    no_speech_gate: bool = True
    min_voiced_ms: int = 200
    partial_max_wait_ms: int = 1000
    max_batch_size: int = 0
    batch_window_ms: int = -1
    encoder_window_s: float = -1.0
    spare_encoder_window_s: float = -1.0
    spare_beam_size: int = 0
    max_tokens_per_s: float = 0.0
    timestamp_tokens: bool = True

    # Access and admission
    api_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    certfile: str | None = None
    keyfile: str | None = None

    # Per-session limits
    max_speed: float = 10.0
    idle_timeout_s: float = 30.0
    max_session_s: float = 4 * 3600.0
    ping_interval_s: float = 20.0
    max_unsent_messages: int = 256
    shutdown_grace_s: float = 10.0
    max_sessions: int = 0
    max_final_wait_ms: int = 1000

    # VAD and endpointing
    vad_aggressiveness: int = 3
    vad_frame_ms: int = 30
    speech_start_ms: int = 90
    preroll_ms: int = 300
    pause_ms: int = 150
    endpoint_silence_ms: int = 500
    partial_interval_ms: int = 500
    pause_cut_s: float = -1.0
    commit_holdback_words: int = 6
    cut_context_chars: int = 0
    context_s: float = 8.0
    context_gap_s: float = 1.0
    cut_lookahead_s: float = 0.0
    commit_cut_s: float = -1.0
    max_utterance_s: float = 15.0
    max_buffer_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, not {self.port}")
        if self.wyoming_port is not None and not 0 <= self.wyoming_port <= 65535:
            raise ConfigError(f"--wyoming-port must be 0..65535, not {self.wyoming_port}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, not {self.device!r}")
        if self.beam_size < 0:
            raise ConfigError(f"--beam-size must be 0 (auto) or more, not {self.beam_size}")
        if self.spare_beam_size < 0:
            raise ConfigError(f"--spare-beam-size must be 0 (auto) or more, not "
                              f"{self.spare_beam_size}")
        if self.workers < 0 or self.cpu_threads < 0:
            raise ConfigError("--workers and --cpu-threads must be 0 (auto) or more")
        if self.vad_aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"--vad-aggressiveness must be 0..3, not {self.vad_aggressiveness}")
        if self.vad_frame_ms not in (10, 20, 30):
            raise ConfigError(f"--vad-frame-ms must be 10, 20 or 30, not {self.vad_frame_ms}")
        if self.max_batch_size < 0 or self.max_sessions < 0:
            raise ConfigError("--max-batch-size and --max-sessions must be 0 (auto) or more")
        if not (self.spare_encoder_window_s == -1 or 0 <= self.spare_encoder_window_s <= 30):
            raise ConfigError("--spare-encoder-window-s must be -1 (auto), 0 (the full 30 s) "
                              "or a step of up to 30 s")
        if not (self.encoder_window_s == -1 or 0 <= self.encoder_window_s <= 30):
            raise ConfigError("--encoder-window-s must be -1 (auto), 0 (the full 30 s) or "
                              "a step of up to 30 s")
        if self.max_tokens_per_s < 0:
            raise ConfigError("--max-tokens-per-s must be 0 (the model's limit) or more")
        if self.max_final_wait_ms <= 0:
            raise ConfigError("--max-final-wait-ms must be above 0")
        if self.max_speed < 1.0:
            raise ConfigError("--max-speed must be at least 1 (real time)")
        for name in ("idle_timeout_s", "max_session_s", "ping_interval_s", "shutdown_grace_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be above 0")
        if self.max_unsent_messages < 16:
            raise ConfigError("--max-unsent-messages must be at least 16")
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError("--certfile and --keyfile go together")
        if self.max_frame_bytes < 4:
            raise ConfigError("--max-frame-bytes must be at least 4")
        if not 0 < self.pause_ms <= self.endpoint_silence_ms:
            raise ConfigError("--pause-ms must be above 0 and at most --endpoint-silence-ms")
        if self.partial_interval_ms < 100:
            raise ConfigError("--partial-interval-ms must be at least 100")
        if not (self.commit_cut_s == -1 or 1.0 <= self.commit_cut_s <= self.max_utterance_s):
            raise ConfigError("--commit-cut-s must be -1 (auto) or between 1 and "
                              "--max-utterance-s")
        if self.commit_holdback_words < 0:
            raise ConfigError("--commit-holdback-words must be 0 or more")
        if not 0 <= self.context_s <= 10:
            raise ConfigError("--context-s must be 0 (off) to 10")
        if self.context_gap_s < 0:
            raise ConfigError("--context-gap-s must be 0 or more")
        if not 0 <= self.cut_lookahead_s <= 3:
            raise ConfigError("--cut-lookahead-s must be 0 (off) to 3")
        if not (self.pause_cut_s == -1 or self.pause_cut_s >= 0):
            raise ConfigError("--pause-cut-s must be -1 (auto), 0 or more")
        if self.max_utterance_s + 5.0 > self.max_buffer_s:
            raise ConfigError("--max-utterance-s must be at least 5 s below the 30 s buffer")
        if self.max_buffer_s > 30.0:
            raise ConfigError("the ring buffer holds at most 30 s (one Whisper window)")

    def resolved(self, *, gpus: int, cpus: int) -> Config:
        """This config with every "auto" value (0, -1, "auto") made concrete for a machine
        with `gpus` CUDA devices and `cpus` cores: the one effective config everyone reads.
        Idempotent; engine.effective_config() asks CTranslate2 for the GPU count."""
        if self.device == "cuda" and gpus == 0:
            raise ConfigError("--device cuda: CTranslate2 sees no CUDA GPU (try --device cpu)")
        cuda = self.device == "cuda" or (self.device == "auto" and gpus > 0)
        window = self.encoder_window_s if self.encoder_window_s >= 0 else (0.0 if cuda else 10.0)
        # Each value below was measured (docs/benchmarks.md: "Many streams on one model" for the
        # CPU, "GPU" for an H100 with tiny.en float16 and a large-v3-turbo-shaped model).
        return self.replace(
            device="cuda" if cuda else "cpu",
            compute_type=("float16" if cuda else "int8") if self.compute_type == "auto"
            else self.compute_type,
            # Beam search gave tiny.en the same WER as greedy on both devices, for 25 % (CPU)
            # to 60 % (H100) more decode time; a context prompt cost 30-60 % more time on CPU
            # for no gain, and made run-on speech worse after a cut.
            beam_size=self.beam_size or 1,
            context_chars=self.context_chars if self.context_chars >= 0 else 0,
            workers=self.workers or 2,
            # On CPU each worker gets every core (up to 8): alone, a decode runs at full speed;
            # together, two workers of two threads decode as much per second as two of one. On
            # CUDA, CTranslate2's CPU threads idle: one each decoded as fast as eight.
            cpu_threads=self.cpu_threads or (1 if cuda else min(8, cpus)),
            # Batches form only when requests wait, so they cost nothing at light load. On CPU
            # with 10 s windows a batch of 4 decodes 1.6x as much per second as one at a time,
            # in 0.7 s. On an H100, rtasr's batched decode got slower per request as batches
            # grew (22 decodes/s alone, 19 in fours, 11 in sixteens): batching is off there.
            max_batch_size=self.max_batch_size or (1 if cuda else 4),
            batch_window_ms=self.batch_window_ms if self.batch_window_ms >= 0 else 0,
            # tiny.en decodes 2.3x faster on CPU with the utterance padded to 10 s steps instead
            # of 30 s, for about 0.3 points of WER; 5 s steps wreck it. On an H100 the 10 s
            # window saved nothing (26 vs 27 ms) and cost WER: the full window there.
            encoder_window_s=window,
            # A wider window for finals while a worker would otherwise idle: off by default. On
            # tiny.en 15 s instead of 10 gained 0.2-0.6 points on clips decoded alone but
            # nothing on a streamed run, and it flipped base's results on some clips.
            spare_encoder_window_s=self.spare_encoder_window_s
            if self.spare_encoder_window_s >= 0 else window,
            # The beam a final at a pause gets while the engine has capacity to spare: 5 (the
            # yardstick's). Base streamed es/fr 1-3 points closer to the yardstick; tiny.en's
            # paused stream on seed 3 went from +1.84 points to +0.31, at the same latency
            # (a cut's final inside run-on speech never gets it: Request.spare_ok).
            spare_beam_size=max(self.spare_beam_size or 5,
                                self.beam_size or 1),
            # Sessions the device can carry (load_bench.py); refusing the next one beats
            # slowing every one down. An H100 with tiny.en held 16 sessions and missed the
            # target at 64 (final p95 1.7 s): 32 until the GPU decode path batches.
            max_sessions=self.max_sessions or (32 if cuda else 8 * cpus),
        )._with_cut_lengths()

    def served_with(self, engine: Config) -> Config:
        """This config (a transport's: its port, keys, limits, endpointing) serving sessions
        on an engine whose effective config is `engine` (Engine.config, resolved where the
        model runs, which for Ray is another process and maybe another machine): the model
        and engine fields are the engine's, and an auto --max-sessions the engine's figure.
        The one resolved config the gateway, the sessions and the file transcriber read."""
        return self.replace(**{name: getattr(engine, name) for name in ENGINE_FIELDS},
                            max_sessions=self.max_sessions or engine.max_sessions,
                            )._with_cut_lengths()

    def _with_cut_lengths(self) -> Config:
        """Auto --commit-cut-s and --pause-cut-s for this config's model. Run-on speech is cut
        past 4 s for an English-only model: tiny.en's finals at cuts cost no more than decoding
        each utterance whole, and a final inside run-on speech cannot come before its cut. A
        multilingual model (base) mishears the first words after a cut more: past 6 s, base
        streamed Spanish and French 1-2 points closer to the yardstick, for run-on finals
        about 1 s later (docs/benchmarks.md, "Sixth pass")."""
        auto = min(4.0 if self.english_only else 6.0, self.max_utterance_s)
        return self.replace(commit_cut_s=self.commit_cut_s if self.commit_cut_s >= 0 else auto,
                            pause_cut_s=self.pause_cut_s if self.pause_cut_s >= 0 else auto)

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def english_only(self) -> bool:
        """The model is English-only: the bundled tiny.en; a CTranslate2 directory by its
        vocabulary (as CTranslate2 decides, below 51,865 tokens); a model name by its suffix
        (tiny.en). The config is resolved before the model loads."""
        if self.model is None:
            return True
        tokens = _vocabulary_size(self.model)
        return tokens < MULTILINGUAL_TOKENS if tokens else Path(self.model).name.endswith(".en")

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE_HZ * self.vad_frame_ms // 1000


MULTILINGUAL_TOKENS = 51865  # Whisper's multilingual vocabulary; English-only models have one less


@functools.lru_cache(maxsize=8)
def _vocabulary_size(model: str) -> int:
    """Tokens in a CTranslate2 model directory's vocabulary (vocabulary.json or .txt); 0 for
    a model name or a directory without one."""
    folder = Path(model)
    if (folder / "vocabulary.json").is_file():
        return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
    if (folder / "vocabulary.txt").is_file():
        with (folder / "vocabulary.txt").open(encoding="utf-8") as lines:
            return sum(1 for _ in lines)
    return 0
