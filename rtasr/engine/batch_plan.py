"""The batch plan: which requests can share one model call, and what each of them costs.

What CTranslate2 (4.8) allows, read from its Whisper source and measured:

- `generate` takes one prompt per item, so items of different languages and tasks share one
  call: a detected language's token is put in its item's prompt, over the one encoder output.
  But every item's <|startoftranscript|> must sit at the same position: the text of the
  prompts before it (a session's own prompt and its running context) must have one length.
  There is no attention mask over that text, so a shorter prompt cannot be padded without
  changing what the model reads. Measured (docs/benchmarks.md): left-padding mixed prompts on
  the run-on clips took tiny.en from 3.4 % WER to 5.3 % (<|endoftext|>) and 17 %
  (<|startofprev|>), repeating and dropping sentences.
- `align` takes one start sequence (<|startoftranscript|>, language, task) for the whole call:
  one alignment per (language, task) in a batch (one for an English-only model).

- `generate` takes one beam size per call, but several calls may read one encoder output: the
  items of a batch are encoded together, then generated one call per beam size, the finals'
  calls before the partials' (a lone final with its beam, then the first words of other
  utterances riding in its batch), so a final goes back before the partials are generated.
  Batched, a beam of 5 cost tiny.en 18 % more time than greedy at 4 items a batch, 32 % alone
  (docs/benchmarks.md).

So the batch key, computed when a request is submitted (`BatchDecoder.batch_key`, called by
`Engine.transcribe`), holds the encoder window and the prompt's position (`prompt_position`);
the scheduler forms batches on it, and the engine decodes each in one encoder pass and a
`generate` call per beam size (and one for the partials). Pure functions; no model.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def prompt_position(previous_tokens: int) -> int:
    """Where <|startoftranscript|> sits in a prompt with that many tokens of previous text:
    after <|startofprev|> and the text, or first when there is none."""
    return 1 + previous_tokens if previous_tokens else 0


def group_indices(keys: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """The indices of equal keys, in order of first appearance."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def share(seconds: float, items: int) -> float:
    """A request's share of a model call that took `seconds` for `items` requests."""
    return seconds / max(1, items)
