"""Decoding loops: Whisper sometimes repeats a phrase until its token limit.

It happens most without timestamp tokens (`--no-timestamp-tokens`), where nothing tells the
decoder that the audio has ended: after the last word of "Press 2 to change folders, press 3
for advanced options, press zero for mailbox options." tiny.en says "Press 0 for mailbox
options." again and again, to the 224th token. A loop makes the text compress too well
(faster-whisper's compression-ratio check), and such a decode used to be dropped whole, losing
the words spoken before it. `cut_loop` keeps those words and one copy of the repeated phrase;
a decode that is nothing but a loop (music heard as "Thank you. Thank you. ...") is still
dropped.

Without timestamp tokens the decoder can also say its last sentence twice ("did not match.
Please try again. Please try again.", or three times): the copies are no loop and pass the
compression check. Alignment gives it away: a copy that was never spoken is squeezed into no
time at the audio's end. `doubled_tail` finds such copies from the timed words. Pure functions
on token ids, text and word times; no model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

MIN_REPEATS = 3  # copies of a phrase in a row that make a loop
MAX_PHRASE = 48  # tokens in the longest phrase looked for

SPOKEN_FRACTION = 0.5  # a copy aligned to less of the first copy's time was not spoken

_PHRASE_LOOP = re.compile(r"\b((?:\w+\W+){1,4}?)\1{3,}", re.IGNORECASE)


def cut_loop(tokens: list[int], ends_sentence: Callable[[int], bool] = lambda _: False,
             special: Callable[[int], bool] = lambda _: False) -> list[int]:
    """`tokens` without the loop they end in, if they do: a phrase repeated at least
    MIN_REPEATS times in a row to the end (the last copy may be cut short by the token
    limit). One copy is kept, and where it can end with a sentence (`ends_sentence` of its
    last token) it does: "advanced options. Press 0 for mailbox options. Press 0 ..." is
    periodic from the first "options", but the copy said is "Press 0 for mailbox options.".
    [] if nothing but `special` tokens (a leading timestamp) came before the loop; `tokens`
    unchanged if they end in none."""
    lead = 0
    while lead < len(tokens) and special(tokens[lead]):
        lead += 1
    if lead:
        words = cut_loop(tokens[lead:], ends_sentence)
        return tokens[:lead] + words if words else []
    n = len(tokens)
    best: tuple[int, int] | None = None  # (where the repetition begins, phrase length)
    for size in range(1, min(MAX_PHRASE, n // MIN_REPEATS) + 1):
        j = n  # tokens[j:] each equal the token `size` before them
        while j - size > 0 and tokens[j - 1] == tokens[j - 1 - size]:
            j -= 1
        first = j - size
        if n - first >= MIN_REPEATS * size and (best is None or first < best[0]):
            best = (first, size)
    if best is None:
        return tokens
    first, size = best
    if first == 0:
        return []
    at = first + size
    for end in range(at, min(at + size, n + 1)):
        if ends_sentence(tokens[end - 1]):
            return tokens[:end]
    return tokens[:at]


def collapse_phrases(text: str) -> str:
    """Collapse a phrase of 1-4 words repeated four or more times (a decoding loop that
    passed the compression check) to one."""
    return _PHRASE_LOOP.sub(r"\1", text)


def doubled_tail(words: Sequence[tuple[str, float, float]],
                 ends: tuple[str, ...] = (".", "?", "!")) -> int:
    """How many of the timed `words` (text, start, end) to drop at the end: the copies of the
    last sentence, when the text ends in a run of one sentence said again and again (letters
    and digits compared, case ignored), that alignment gave less than SPOKEN_FRACTION of the
    first copy's time, from the last back; else 0. A sentence really said twice takes about
    as long each time, and is kept."""
    bounds = [i + 1 for i, (text, _, _) in enumerate(words) if text.rstrip().endswith(ends)]
    if not bounds or bounds[-1] != len(words):
        return 0
    sentences = [words[a:b] for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
    last = _plain(sentences[-1])
    run = 1
    while run < len(sentences) and _plain(sentences[-run - 1]) == last:
        run += 1
    said = _span(sentences[-run])
    dropped = 0
    for copy in reversed(sentences[len(sentences) - run + 1:]):
        if _span(copy) >= SPOKEN_FRACTION * said:
            break
        dropped += len(copy)
    return dropped


def _span(words: Sequence[tuple[str, float, float]]) -> float:
    return words[-1][2] - words[0][1]


def _plain(words: Sequence[tuple[str, float, float]]) -> str:
    return re.sub(r"\W+", " ", " ".join(w[0] for w in words)).strip().lower()
