"""An OpenAI realtime transcription session's settings, and the one validated parse of the
`session` object a client sends in `session.update`.

Every field is checked for its type and bounded (core/limits.py) before anything is taken: a
bad value refuses the whole update with a `ParameterError` naming the field's path
(`session.audio.input.format.rate`), and the session keeps its settings. Fields rtasr only
accepts (the model, noise reduction, VAD threshold) are checked too and shown back as
`session.updated` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..core import limits
from ..core.protocol import Encoding, StreamParams
from ..errors import ParameterError

FORMATS: dict[str, tuple[Encoding, int]] = {
    "audio/pcm": ("pcm_s16le", 24_000), "audio/pcmu": ("mulaw", 8_000),
    "audio/pcma": ("alaw", 8_000)}
VAD_TYPES = ("server_vad", "semantic_vad")
NOISE_TYPES = ("near_field", "far_field")
EAGERNESS = ("low", "medium", "high", "auto")
MIN_SILENCE_MS = 300  # shorter silences split words on a CPU VAD (as deepgram.py)
MAX_SILENCE_MS = 10_000
MAX_PREFIX_PADDING_MS = 10_000  # accepted; the preroll taken is at most PREROLL_MS_MAX
PREROLL_MS_MAX = 1_000
MANUAL_SILENCE_MS = 3_600_000  # turn_detection null: no endpoint; only commit ends an item
MANUAL_PREROLL_MS = 300
DEFAULT_VAD: dict[str, Any] = {"type": "server_vad", "threshold": 0.5,
                               "prefix_padding_ms": 300, "silence_duration_ms": 500}


@dataclass(frozen=True)
class Settings:
    """What a transcription session runs with: the stream's parameters and the rest as
    `session.updated` shows it (`vad` None: turn_detection null, manual commits)."""

    params: StreamParams
    format: dict[str, Any]
    vad: dict[str, Any] | None
    noise: dict[str, Any] | None = None
    model: str = ""

    @property
    def manual(self) -> bool:
        return self.vad is None

    def changes(self) -> tuple[tuple[str, int], ...]:
        """The Config fields this session changes (the endpoint silence and the preroll)."""
        if self.vad is None:
            return (("endpoint_silence_ms", MANUAL_SILENCE_MS),
                    ("preroll_ms", MANUAL_PREROLL_MS))
        return (("endpoint_silence_ms", max(self.vad["silence_duration_ms"], MIN_SILENCE_MS)),
                ("preroll_ms", min(self.vad["prefix_padding_ms"], PREROLL_MS_MAX)))

    def view(self, session_id: str) -> dict[str, Any]:
        """The session as `session.created` / `session.updated` show it."""
        transcription = {"model": self.model, "language": self.params.language,
                         "prompt": self.params.prompt or ""}
        return {"type": "transcription", "id": session_id,
                "object": "realtime.transcription_session",
                "audio": {"input": {"format": self.format, "noise_reduction": self.noise,
                                    "transcription": transcription,
                                    "turn_detection": self.vad}},
                "include": None}


def initial(default_language: str | None, model: str) -> Settings:
    return Settings(StreamParams(sample_rate=24_000, language=default_language),
                    {"type": "audio/pcm", "rate": 24_000}, dict(DEFAULT_VAD), model=model)


def updated(current: Settings, session: Any, default_language: str | None) -> Settings:
    """`current` changed by a `session.update`'s `session` object: only the fields present
    change. Raises ParameterError (its `param` the field's path) and changes nothing."""
    if session is None:
        raise ParameterError("session.update needs a 'session' object", param="session",
                             reason="missing_required_parameter")
    session = _object(session, "session")
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise ParameterError("session.type must be 'transcription': rtasr serves "
                             "transcription sessions only", param="session.type",
                             reason="invalid_value")
    audio = _object(session.get("audio"), "session.audio")
    audio_in = _object(audio.get("input"), "session.audio.input")
    path = "session.audio.input"
    params, fmt = current.params, current.format
    if audio_in.get("format") is not None:
        encoding, rate, fmt = _format(audio_in["format"], f"{path}.format")
        params = replace(params, encoding=encoding, sample_rate=rate)
    model = current.model
    transcription = _object(audio_in.get("transcription"), f"{path}.transcription")
    if "language" in transcription:
        language = limits.language(transcription["language"],
                                   f"{path}.transcription.language")
        params = replace(params, language=language or default_language)
    if "prompt" in transcription:
        params = replace(params, prompt=limits.prompt(transcription["prompt"],
                                                      f"{path}.transcription.prompt"))
    if "model" in transcription:
        model = limits.text(transcription["model"], f"{path}.transcription.model") or model
    vad = current.vad
    if "turn_detection" in audio_in:
        vad = _turn_detection(audio_in["turn_detection"], f"{path}.turn_detection")
    noise = current.noise
    if "noise_reduction" in audio_in:
        noise = _noise(audio_in["noise_reduction"], f"{path}.noise_reduction")
    return Settings(params, fmt, vad, noise, model)


def _object(value: Any, name: str) -> dict[str, Any]:
    return limits.mapping(value, name)


def _format(value: Any, path: str) -> tuple[Encoding, int, dict[str, Any]]:
    fmt = _object(value, path)
    kind = limits.choice(fmt.get("type", "audio/pcm"), f"{path}.type", tuple(FORMATS))
    encoding, rate = FORMATS[kind]
    if fmt.get("rate") is not None:
        rate = limits.sample_rate_hz(fmt["rate"], f"{path}.rate")
    return encoding, rate, {"type": kind, "rate": rate}


def _turn_detection(value: Any, path: str) -> dict[str, Any] | None:
    """The server VAD's settings (semantic_vad is taken as server_vad); None: manual."""
    if value is None:
        return None
    given = _object(value, path)
    limits.choice(given.get("type", "server_vad"), f"{path}.type", VAD_TYPES)
    vad = dict(DEFAULT_VAD)
    if given.get("threshold") is not None:
        vad["threshold"] = limits.number(given["threshold"], f"{path}.threshold", 0.0, 1.0)
    if "prefix_padding_ms" in given:
        vad["prefix_padding_ms"] = limits.integer(
            given["prefix_padding_ms"], f"{path}.prefix_padding_ms", 0, MAX_PREFIX_PADDING_MS)
    if "silence_duration_ms" in given:
        vad["silence_duration_ms"] = limits.integer(
            given["silence_duration_ms"], f"{path}.silence_duration_ms", 0, MAX_SILENCE_MS)
    if given.get("eagerness") is not None:  # semantic_vad's: accepted
        limits.choice(given["eagerness"], f"{path}.eagerness", EAGERNESS)
    for name in ("create_response", "interrupt_response"):  # a conversation's: accepted
        if given.get(name) is not None:
            limits.flag(given[name], f"{path}.{name}", False)
    return vad


def _noise(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    noise = _object(value, path)
    return {"type": limits.choice(noise.get("type"), f"{path}.type", NOISE_TYPES)}
