"""The error hierarchy: every error rtasr raises on purpose is an `RtasrError`.

Errors that reach a client carry a wire `code` and, where they end the session, a websocket
close code. The table in docs/protocol.md lists them; keep the two in step.
"""

from __future__ import annotations

# Websocket close codes (RFC 6455 section 7.4.1 and the IANA registry).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013


class RtasrError(Exception):
    """Root of rtasr's errors."""

    code = "internal_error"
    close_code: int | None = CLOSE_INTERNAL


class ClientValueError(RtasrError):
    """A value a client sent that rtasr refuses: which one (`param`, a dotted path such as
    `session.audio.input.format.rate`) and why (`reason`, in OpenAI's words: `invalid_type`,
    `invalid_value`, `integer_below_min_value`, `integer_above_max_value`,
    `string_above_max_length`), for dialects whose errors name them."""

    def __init__(self, message: str, *, param: str | None = None,
                 reason: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.reason = reason


class ConfigError(RtasrError):
    """A user's mistake in the server's configuration (CLI flags, model path, device)."""

    code = "config_error"


class ProtocolError(ClientValueError):
    """A client message that is not valid JSON or not a known message; the session carries on."""

    code = "bad_message"
    close_code = None


class ParameterError(ClientValueError):
    """A bad connection parameter (query string); the session is refused."""

    code = "bad_parameter"
    close_code = CLOSE_POLICY


class AudioFormatError(RtasrError):
    """An audio frame that cannot be decoded in the declared encoding."""

    code = "bad_audio"
    close_code = CLOSE_INVALID_DATA


class FrameTooLargeError(RtasrError):
    """An audio or text frame over the server's frame limit."""

    code = "frame_too_large"
    close_code = CLOSE_TOO_BIG


class EngineError(RtasrError):
    """The model failed on one request; the session and the server carry on."""

    code = "engine_error"
    close_code = None


class FinalTimeoutError(RtasrError):
    """A closing session's finals did not come from the model in time; the close goes on."""

    code = "final_timeout"
    close_code = None


class OverloadedError(RtasrError):
    """The server cannot take another session now."""

    code = "overloaded"
    close_code = CLOSE_TRY_AGAIN


class LimitError(RtasrError):
    """A session went past one of the server's limits (idle, duration, unread messages)."""

    code = "limit_exceeded"
    close_code = CLOSE_POLICY


class IdleTimeoutError(LimitError):
    code = "idle_timeout"


class SessionTooLongError(LimitError):
    code = "session_too_long"


class SlowConsumerError(LimitError):
    code = "slow_consumer"
