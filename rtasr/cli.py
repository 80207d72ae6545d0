"""The command line: `rtasr serve`, a thin shell over `Server`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config
from .core import limits
from .engine.engine import effective_config
from .errors import ConfigError
from .logs import setup_logging
from .server.app import Server

log = logging.getLogger("rtasr")

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown, but for an option whose default is nothing (None): its help says in
    words what then happens."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _flag(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata["argparse"].get("flag", "--" + f.name.replace("_", "-")))


def _dest(f: dataclasses.Field[Any]) -> str:
    return _flag(f).removeprefix("--").replace("-", "_")


def _options() -> list[dataclasses.Field[Any]]:
    """The Config fields `rtasr serve` takes as options (config.option), in --help order."""
    return [f for f in dataclasses.fields(Config) if "help" in f.metadata]


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per Config field that has help text: its flag, group, default and help."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in _options():
        kwargs = dict(f.metadata["argparse"])
        kwargs.pop("flag", None)
        if isinstance(f.default, bool):
            kwargs.setdefault("action", argparse.BooleanOptionalAction)
        elif "action" not in kwargs and f.default is not None and not isinstance(f.default,
                                                                                  tuple):
            kwargs.setdefault("type", type(f.default))
        # a tuple's default is nothing given (None): config_from_args keeps the field's
        default = None if isinstance(f.default, tuple) else f.default
        group = f.metadata["group"]
        if group not in groups:
            groups[group] = p.add_argument_group(group)
        groups[group].add_argument(_flag(f), default=default,
                                   help=f.metadata["help"].replace("%", "%%"), **kwargs)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the websocket server",
        description="Run the realtime speech-recognition server (websocket on /ws).",
        formatter_class=_HelpFormatter,
    )
    _add_config_options(p)
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
    p.add_argument("--diarize", action="store_true",
                   help="label who speaks (the server needs --diarize): 'Speaker 1: ...' in "
                        "text, '[Speaker 1]' in srt, '<v Speaker 1>' in vtt, \"speaker\" in json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtasr", description="Realtime speech recognition.")
    parser.add_argument("--version", action="version", version=f"rtasr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _transcribe_parser(sub)
    return parser


def api_keys(args: argparse.Namespace) -> tuple[str, ...]:
    return limits.api_keys(args.api_key or (), os.environ.get("RTASR_API_KEYS", ""))


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config of `rtasr serve`'s options; an option not given keeps the field's default."""
    values: dict[str, Any] = {}
    for f in _options():
        value = getattr(args, _dest(f))
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return Config(**{**values, "api_keys": api_keys(args)})


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
            output_dir=args.output_dir, api_key=args.api_key, diarize=args.diarize)
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
