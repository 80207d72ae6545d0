"""Word alignment between hypotheses (sans-I/O): where one word list ends inside another.

Two decodes of the same speech often differ in how they spell it ("want to" / "wanna",
"1" / "one", "log on" / "logon"), so words are compared as characters, not one by one: the
words are normalized (lowercase, no punctuation, small numbers spelled out), joined without
spaces, and `best_prefix` finds how many words of one list cover another list best by edit
distance. The session uses it to keep `committed` words when a new hypothesis disagrees with
them, to make a final begin with its committed words, and to remove from an utterance's text
the words an earlier final already holds (after a cut).
"""

from __future__ import annotations

from collections.abc import Sequence

from .text import normalize

_LOOKAHEAD = 3  # words past the target's length that `best_prefix` still considers


def norm(word: str) -> str:
    """One word as it is compared: 'Twenty-One,' -> 'twentyone'."""
    return "".join(normalize(word))


def best_prefix(target: Sequence[str], words: Sequence[str]) -> int:
    """How many leading `words` match `target` best (fewest character edits, ties: fewer).

    0 when no prefix of `words` is closer to `target` than nothing is. Words equal to the
    target's are matched directly; only the rest is aligned by characters.
    """
    return _best_prefix(target, words)[0]


def _best_prefix(target: Sequence[str], words: Sequence[str]) -> tuple[int, int]:
    """best_prefix, and the character edits its match took."""
    t = [norm(w) for w in target]
    w = [norm(x) for x in words]
    same = 0
    while same < min(len(t), len(w)) and t[same] == w[same]:
        same += 1
    rest = "".join(t[same:])
    if not rest:
        return same, 0
    # Edit distance of `rest` against each longer prefix of the remaining words: one DP row
    # per character of the words, read out at each word boundary.
    # Ties go to the prefix closest in length to the target ("is" -> "was", not "" + "was"),
    # then to fewer words.
    row = list(range(len(rest) + 1))
    best, best_key = same, (len(rest), len(rest))
    chars = 0
    for n in range(same, min(len(w), len(t) + _LOOKAHEAD)):
        for ch in w[n]:
            new = [row[0] + 1]
            for i, r in enumerate(rest, 1):
                new.append(min(row[i] + 1, new[i - 1] + 1, row[i - 1] + (r != ch)))
            row = new
        chars += len(w[n])
        key = (row[-1], abs(chars - len(rest)))
        if key < best_key:
            best, best_key = n + 1, key
    return best, best_key[0]


def splice(committed: Sequence[str], words: Sequence[str]) -> tuple[int, int]:
    """Where `committed` sits in a new hypothesis `words`: (j, k) such that `words[:j]` is
    the hypothesis' version of `committed[:k]`. The text to show is committed + words[j:];
    `committed[k:]` are committed words the hypothesis does not have at all (k < len only
    when the hypothesis ends before the committed words do)."""
    j = best_prefix(committed, words)
    k = len(committed) if j < len(words) else best_prefix(words[:j], committed)
    return j, max(k, 0)


def strip_prefix(said: Sequence[str], words: Sequence[str]) -> int:
    """How many leading `words` repeat `said` (words an earlier final already holds): none
    unless they match at least half of its characters. A decode that does not begin with the
    words said is not made to lose as many of its own."""
    if not said:
        return 0
    n, edits = _best_prefix(said, words)
    return n if 2 * edits <= sum(len(norm(w)) for w in said) else 0


def context_end(said: Sequence[str], words: Sequence[str],
                anchor: int = 8) -> tuple[int, int]:
    """How many leading `words` a decode heard in context whose words were `said`: the word
    boundary where `said`'s last `anchor` words end best (fewest character edits, ties: the
    earliest), the decode free to have more words before them (the context's audio may hold
    words `said` lacks); and the edits that took. (0, chars) when nothing matches."""
    t = "".join(norm(w) for w in said[-anchor:])
    if not t:
        return 0, 0
    row = list(range(len(t) + 1))  # row[i]: edits of t[:i] ending here; the start is free
    best, best_edits = 0, len(t)
    for n, word in enumerate(words[: len(said) + anchor]):
        for ch in norm(word):
            new = [0]
            for i, c in enumerate(t, 1):
                new.append(min(row[i] + 1, new[i - 1] + 1, row[i - 1] + (c != ch)))
            row = new
        if row[-1] < best_edits:
            best, best_edits = n + 1, row[-1]
    return best, best_edits


def common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """How many leading words `a` and `b` share, compared as `norm` spells them."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if norm(x) != norm(y):
            break
        n += 1
    return n
