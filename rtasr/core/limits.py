"""Every bound on a value a client sends, and the one parse of each kind of value.

Query strings, JSON control messages, REST form fields and queries all read their values
through these functions, so a sample rate, a prompt, a language tag or a true/false word means
the same, and is bounded the same, whichever dialect carries it. A value may come as text (a
query string, a form field) or as JSON (any type): each function checks the type first. A bad
value raises `ParameterError` naming the value (`param`) and why (`reason`); a dialect turns it
into its own error shape. docs/operations.md has the table of every limit.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs

from ..errors import ParameterError

MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 48_000
MAX_PROMPT_CHARS = 500  # the decoder's prompt: tokenized for every decode
MAX_LANGUAGE_CHARS = 35  # a BCP 47 tag such as `en-US` or `zh-Hant-TW`; only its language is used
MAX_NAME_CHARS = 200  # a model name or another value echoed back, not used
MAX_DIGITS = 20  # a number written as text: longer is refused before it is parsed
MAX_QUERY_FIELDS = 100  # parameters in one query string (repeated ones count each time)
MAX_KNOWN_SPEAKERS = 4  # reference voices in one request (OpenAI's known_speaker_references[])
MAX_SPEAKER_NAME_CHARS = 64  # a known speaker's name, echoed on each of its segments
MAX_REFERENCE_BYTES = 2 << 20  # one reference clip (a data URL's audio, decoded from base64)
MAX_REFERENCES_BYTES = 4 << 20  # all of one request's reference clips together
MIN_REFERENCE_S, MAX_REFERENCE_S = 2.0, 10.0  # a reference clip's length (OpenAI's bounds)
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

T = TypeVar("T", bound=str)


def _shown(value: Any) -> str:
    """A client's value in an error message, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def query_lists(query: str) -> dict[str, list[str]]:
    """A query string's parameters, each with every value it was given (at most
    MAX_QUERY_FIELDS in all)."""
    try:
        return parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise ParameterError(f"a query string has at most {MAX_QUERY_FIELDS} parameters",
                             param="query", reason="invalid_value") from None


def query_values(query: str) -> dict[str, str]:
    """A query string's parameters, each with its last value."""
    return {name: values[-1] for name, values in query_lists(query).items()}


def flag(value: Any, name: str, default: bool) -> bool:
    """True or false: a JSON boolean, or one of TRUE_WORDS / FALSE_WORDS as text (any case);
    None (absent) is `default`."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= 8:
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    reason = "invalid_value" if isinstance(value, str) else "invalid_type"
    raise ParameterError(f"{name} must be true or false, not {_shown(value)}", param=name,
                         reason=reason)


def integer(value: Any, name: str, low: int, high: int) -> int:
    """An integer in low..high: a JSON number with no fraction, or decimal digits as text."""
    number: int
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParameterError(f"{name} must be an integer, not {_type_name(value)}", param=name,
                             reason="invalid_type")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_DIGITS or not text.lstrip("+-").isdecimal() or not text.isascii():
            raise ParameterError(f"{name} must be an integer, not {_shown(value)}", param=name,
                                 reason="invalid_type")
        number = int(text)
    elif isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise ParameterError(f"{name} must be an integer, not {_shown(value)}", param=name,
                                 reason="invalid_type")
        number = int(value)
    else:
        number = value
    if number < low:
        raise ParameterError(f"{name} must be {low}..{high}, not {_shown(number)}", param=name,
                             reason="integer_below_min_value")
    if number > high:
        raise ParameterError(f"{name} must be {low}..{high}, not {_shown(number)}", param=name,
                             reason="integer_above_max_value")
    return number


def number(value: Any, name: str, low: float, high: float) -> float:
    """A finite number in low..high: a JSON number, or a decimal number as text."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParameterError(f"{name} must be a number, not {_type_name(value)}", param=name,
                             reason="invalid_type")
    try:
        result = float(value) if not isinstance(value, str) or len(value) <= 40 else math.nan
    except ValueError:
        result = math.nan
    if not math.isfinite(result):
        raise ParameterError(f"{name} must be a number, not {_shown(value)}", param=name,
                             reason="invalid_type")
    if not low <= result <= high:
        reason = "decimal_below_min_value" if result < low else "decimal_above_max_value"
        raise ParameterError(f"{name} must be {low:g}..{high:g}, not {result:g}", param=name,
                             reason=reason)
    return result


def sample_rate_hz(value: Any, name: str = "sample_rate") -> int:
    """A sample rate in MIN_SAMPLE_RATE_HZ..MAX_SAMPLE_RATE_HZ."""
    return integer(value, name, MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ)


def text(value: Any, name: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """A string of at most `max_chars` characters (None is "")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParameterError(f"{name} must be a string, not {_type_name(value)}", param=name,
                             reason="invalid_type")
    if len(value) > max_chars:
        raise ParameterError(f"{name} must be at most {max_chars} characters, not "
                             f"{len(value)}", param=name, reason="string_above_max_length")
    return value


def prompt(value: Any, name: str = "prompt") -> str | None:
    """The decoder's prompt: at most MAX_PROMPT_CHARS characters, trimmed; None when empty."""
    return text(value, name, MAX_PROMPT_CHARS).strip() or None


def language(value: Any, name: str = "language") -> str | None:
    """A language tag's language, lower case (`en-US` → `en`); None (absent or empty): the
    server's language, or detected. Whether the model knows it is the model's to say."""
    tag = text(value, name, MAX_LANGUAGE_CHARS).strip()
    if not tag:
        return None
    primary, *rest = tag.replace("_", "-").split("-")
    if not (primary.isascii() and primary.isalpha() and 2 <= len(primary) <= 3
            and all(part.isascii() and part.isalnum() for part in rest)):
        raise ParameterError(f"{name} must be a language code such as 'en' or 'en-US', not "
                             f"{_shown(tag)}", param=name, reason="invalid_value")
    return primary.lower()


def choice(value: Any, name: str, options: Sequence[T]) -> T:
    """One of `options` (exact)."""
    for option in options:
        if value == option and isinstance(value, str):
            return option
    reason = "invalid_value" if isinstance(value, str) else "invalid_type"
    raise ParameterError(f"{name} must be one of {', '.join(options)}, not {_shown(value)}",
                         param=name, reason=reason)


def mapping(value: Any, name: str) -> dict[str, Any]:
    """A JSON object (None is an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParameterError(f"{name} must be an object, not {_type_name(value)}", param=name,
                             reason="invalid_type")
    return value


def speaker_name(value: Any, name: str) -> str:
    """A known speaker's name: 1..MAX_SPEAKER_NAME_CHARS characters, trimmed, none of them a
    control character or one of `<>&` (the name goes into WebVTT's `<v NAME>`)."""
    label = text(value, name, MAX_SPEAKER_NAME_CHARS).strip()
    if not label or any(c in "<>&" or not c.isprintable() for c in label):
        raise ParameterError(f"{name} must be a name of 1 to {MAX_SPEAKER_NAME_CHARS} "
                             f"printable characters without <, > or &, not {_shown(value)}",
                             param=name, reason="invalid_value")
    return label


def data_url(value: Any, name: str, max_bytes: int) -> bytes:
    """The bytes of a base64 data URL (`data:audio/wav;base64,...`), at most `max_bytes`,
    checked from the URL's length before it is decoded."""
    url = text(value, name, 16 + max_bytes * 4 // 3 + 4 + 200)  # the header, base64, padding
    head, comma, payload = url.partition(",")
    if not (comma and head.startswith("data:") and head.endswith(";base64")):
        raise ParameterError(f"{name} must be a base64 data URL such as "
                             f"'data:audio/wav;base64,...', not {_shown(value)}", param=name,
                             reason="invalid_value")
    if len(payload) * 3 // 4 > max_bytes + 2:
        raise ParameterError(f"{name} must hold at most {max_bytes} bytes of audio", param=name,
                             reason="string_above_max_length")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError(f"{name} is not valid base64", param=name,
                             reason="invalid_value") from None
    if len(data) > max_bytes:
        raise ParameterError(f"{name} must hold at most {max_bytes} bytes of audio", param=name,
                             reason="string_above_max_length")
    return data


def known_speakers(names: Sequence[Any], references: Sequence[Any],
                   names_field: str = "known_speaker_names[]",
                   references_field: str = "known_speaker_references[]"
                   ) -> list[tuple[str, bytes]]:
    """Each known speaker's name and reference clip (the data URL's bytes), in order: at most
    MAX_KNOWN_SPEAKERS, as many names as clips, no name twice, each clip at most
    MAX_REFERENCE_BYTES and all of them at most MAX_REFERENCES_BYTES."""
    if len(names) > MAX_KNOWN_SPEAKERS or len(references) > MAX_KNOWN_SPEAKERS:
        raise ParameterError(f"at most {MAX_KNOWN_SPEAKERS} known speakers",
                             param=references_field, reason="array_above_max_length")
    if len(names) != len(references):
        raise ParameterError(f"{names_field} and {references_field} must name and give the "
                             f"same speakers ({len(names)} names, {len(references)} clips)",
                             param=references_field, reason="invalid_value")
    speakers: list[tuple[str, bytes]] = []
    total_bytes = 0
    for label, reference in zip(names, references, strict=True):
        label = speaker_name(label, names_field)
        if any(label == known for known, _ in speakers):
            raise ParameterError(f"{names_field} names {_shown(label)} twice",
                                 param=names_field, reason="invalid_value")
        clip = data_url(reference, references_field, MAX_REFERENCE_BYTES)
        total_bytes += len(clip)
        if total_bytes > MAX_REFERENCES_BYTES:
            raise ParameterError(f"the {references_field} clips must hold at most "
                                 f"{MAX_REFERENCES_BYTES} bytes of audio together",
                                 param=references_field, reason="string_above_max_length")
        speakers.append((label, clip))
    return speakers


def api_keys(*sources: Iterable[str] | str) -> tuple[str, ...]:
    """API keys from flags (each a key) and `RTASR_API_KEYS`-style text (comma-separated):
    trimmed, empty ones dropped, each once, in order."""
    keys: list[str] = []
    for source in sources:
        keys += source.split(",") if isinstance(source, str) else list(source)
    return tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))
