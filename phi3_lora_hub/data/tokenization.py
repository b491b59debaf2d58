"""Tokenize Phi-3 conversations with labels that train on assistant answers only.

The mask comes from the Phi-3 format itself (:func:`phi3_lora_hub.phi3_format.render` knows where every answer
and its closing ``<|end|>`` sit in the text) and from the tokenizer's character offsets. It therefore works with
any fast tokenizer that speaks the format, the real Phi-3 one and the tiny test one alike, without depending on a
chat template that carries ``{% generation %}`` markers (Phi-3's does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from phi3_lora_hub import phi3_format

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedBatch:
    input_ids: list[list[int]]
    labels: list[list[int]]


def tokenize_conversations(
    tokenizer, conversations: Sequence[Sequence[dict[str, str]]], *, assistant_only_loss: bool = True
) -> TokenizedBatch:
    """Tokenize ``conversations`` in one batch call.

    With ``assistant_only_loss`` the labels are ``-100`` everywhere except the tokens of each assistant answer
    and the ``<|end|>`` that closes it; otherwise every token is a label. The final ``<|endoftext|>`` is part of
    the input (as the real chat template renders it) but not a label: generation stops at ``<|end|>``.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("tokenize_conversations needs a fast tokenizer (it reads character offsets)")
    rendered = [phi3_format.render(messages) for messages in conversations]
    encoded = tokenizer(
        [chat.text for chat in rendered],
        add_special_tokens=False,
        return_offsets_mapping=assistant_only_loss,
        return_attention_mask=False,
    )
    input_ids: list[list[int]] = encoded["input_ids"]
    if not assistant_only_loss:
        return TokenizedBatch(input_ids, [list(ids) for ids in input_ids])
    labels = []
    for ids, offsets, chat in zip(input_ids, encoded["offset_mapping"], rendered, strict=True):
        bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        keep = np.zeros(len(ids), dtype=bool)
        for span in chat.assistant_spans:
            # Tokens overlapping the answer; the role header ends exactly where the answer starts, so it is out.
            keep |= (bounds[:, 1] > span.start) & (bounds[:, 0] < span.end)
        labels.append(np.where(keep, np.asarray(ids, dtype=np.int64), IGNORE_INDEX).tolist())
    return TokenizedBatch(input_ids, labels)
