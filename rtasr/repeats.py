"""Decoding loops: Whisper sometimes repeats a phrase until its token limit.

It happens most without timestamp tokens (`--no-timestamp-tokens`), where nothing tells the
decoder that the audio has ended: after the last word of "Press 2 to change folders, press 3
for advanced options, press zero for mailbox options." tiny.en says "Press 0 for mailbox
options." again and again, to the 224th token. A loop makes the text compress too well
(faster-whisper's compression-ratio check), and such a decode used to be dropped whole, losing
the words spoken before it. `cut_loop` keeps those words and one copy of the repeated phrase;
a decode that is nothing but a loop (music heard as "Thank you. Thank you. ...") is still
dropped. Pure functions on token ids and text; no model.
"""

from __future__ import annotations

import re

MIN_REPEATS = 3  # copies of a phrase in a row that make a loop
MAX_PHRASE = 48  # tokens in the longest phrase looked for

_PHRASE_LOOP = re.compile(r"\b((?:\w+\W+){1,4}?)\1{3,}", re.IGNORECASE)


def cut_loop(tokens: list[int]) -> list[int]:
    """`tokens` up to the end of the first copy of the phrase they end repeating (at least
    MIN_REPEATS times in a row; the last copy may be cut short by the token limit), or [] if
    nothing came before the repetition. Unchanged if they do not end in a loop."""
    n = len(tokens)
    keep: int | None = None
    for size in range(1, min(MAX_PHRASE, n // MIN_REPEATS) + 1):
        for short in range(size):  # the last copy, cut off `short` tokens early
            end = n - short
            phrase = tokens[end - size : end]
            if tokens[end:] != phrase[:short]:
                continue
            copies = 1
            while (end - (copies + 1) * size >= 0
                   and tokens[end - (copies + 1) * size : end - copies * size] == phrase):
                copies += 1
            if copies >= MIN_REPEATS:
                first = end - copies * size
                at = 0 if first == 0 else first + size
                keep = at if keep is None else min(keep, at)
    return tokens if keep is None else tokens[:keep]


def collapse_phrases(text: str) -> str:
    """Collapse a phrase of 1-4 words repeated four or more times (a decoding loop that
    passed the compression check) to one."""
    return _PHRASE_LOOP.sub(r"\1", text)
