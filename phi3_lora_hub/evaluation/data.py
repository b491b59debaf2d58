"""Evaluation examples: a prompt, the reference answer, and the whole conversation for perplexity.

Examples come from any source and format the recipe trains on (converted and validated by the same pipeline),
or from data the recipe already prepared (decoded back from its token ids, so the evaluation sees exactly the
held-out conversations the trainer evaluated on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from phi3_lora_hub import phi3_format
from phi3_lora_hub.data.prepare import DataOptions, convert_rows
from phi3_lora_hub.data.sources import read_rows
from phi3_lora_hub.errors import DataError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class EvalExample:
    """One conversation split at its last assistant answer."""

    prompt: Messages
    """Every message before the last assistant answer (earlier answers are the reference ones)."""
    reference: str
    """The last assistant answer: what generations are compared with."""
    conversation: Messages
    """The conversation up to and including that answer: what perplexity scores."""


def split_conversation(messages: Sequence[dict[str, str]]) -> EvalExample:
    """Split ``messages`` at the last assistant answer; messages after it are dropped (they have no answer)."""
    last = max((i for i, message in enumerate(messages) if message["role"] == "assistant"), default=None)
    if last is None:
        raise DataError("a conversation has no assistant answer to evaluate against")
    kept = [{"role": m["role"], "content": m["content"]} for m in messages[: last + 1]]
    return EvalExample(prompt=kept[:-1], reference=kept[-1]["content"], conversation=kept)


def examples_from_conversations(
    conversations: Sequence[Sequence[dict[str, str]]], max_examples: int | None = None
) -> list[EvalExample]:
    """The first ``max_examples`` conversations (all when ``None``) as :class:`EvalExample` objects."""
    chosen = conversations if max_examples is None else conversations[:max_examples]
    return [split_conversation(messages) for messages in chosen]


def load_examples(
    source: Any,
    *,
    split: str | None = None,
    config_name: str | None = None,
    options: DataOptions | None = None,
    max_examples: int | None = None,
) -> tuple[list[EvalExample], str]:
    """Read, convert and validate ``source`` like training data; returns the examples and a source description.

    ``source`` is anything :func:`phi3_lora_hub.data.sources.read_rows` accepts (a file, a Hub dataset id, a
    ``Dataset`` or a list of dicts) in any supported chat format. Bad rows raise ``DataError`` unless
    ``options.on_bad_rows == "skip"``.
    """
    raw = read_rows(source, split=split, config_name=config_name)
    converted = convert_rows(raw, options or DataOptions())
    return examples_from_conversations(converted.conversations, max_examples), raw.source


def conversations_from_token_ids(tokenizer, rows: Sequence[Sequence[int]]) -> list[Messages]:
    """Decode tokenized Phi-3 conversations (a prepared dataset's ``input_ids``) back into messages.

    Message contents come back stripped of surrounding whitespace; everything else is as tokenized. A row that
    preparation truncated at ``max_length`` loses its unfinished last turn; a row left without any finished
    assistant answer is skipped (there is nothing to compare a generation with).
    """
    conversations = []
    for index, ids in enumerate(rows):
        text = _complete_turns(tokenizer.decode(list(ids), skip_special_tokens=False))
        try:
            messages = phi3_format.parse(text) if text else []
        except ValueError as error:
            raise DataError(f"prepared row {index} does not decode to a Phi-3 conversation: {error}") from None
        if any(message["role"] == "assistant" for message in messages):
            conversations.append(messages)
    return conversations


def _complete_turns(text: str) -> str:
    """``text`` cut after its last ``<|end|>`` when truncation left the final turn open ("" when none closed)."""
    body = text.rstrip()
    if body.endswith((phi3_format.END, phi3_format.EOS)):
        return body
    cut = body.rfind(phi3_format.END)
    return body[: cut + len(phi3_format.END)] if cut >= 0 else ""
