"""Prepared rows decode back into conversations, including rows that preparation truncated at max_length."""

from __future__ import annotations

import pytest

from phi3_lora_hub import phi3_format
from phi3_lora_hub.errors import DataError
from phi3_lora_hub.evaluation.data import conversations_from_token_ids, examples_from_conversations

CONVERSATION = [
    {"role": "user", "content": "Which currency does Peru use?"},
    {"role": "assistant", "content": "Peru uses the sol."},
    {"role": "user", "content": "And Chile?"},
    {"role": "assistant", "content": "Chile uses the Chilean peso, written CLP."},
]


def ids_of(tokenizer, messages) -> list[int]:
    return tokenizer(phi3_format.render(messages).text, add_special_tokens=False)["input_ids"]


def test_a_whole_row_decodes_to_its_messages(tiny_tokenizer):
    assert conversations_from_token_ids(tiny_tokenizer, [ids_of(tiny_tokenizer, CONVERSATION)]) == [CONVERSATION]


def test_a_truncated_row_loses_only_its_unfinished_turn(tiny_tokenizer):
    ids = ids_of(tiny_tokenizer, CONVERSATION)
    truncated = ids[:-6]  # the end of the last answer is cut off, as max_length truncation does
    [conversation] = conversations_from_token_ids(tiny_tokenizer, [truncated])
    assert conversation == CONVERSATION[:3]
    [example] = examples_from_conversations([conversation])
    assert example.reference == "Peru uses the sol." and example.prompt == CONVERSATION[:1]


def test_a_row_truncated_before_any_answer_is_skipped(tiny_tokenizer):
    ids = ids_of(tiny_tokenizer, CONVERSATION)
    first_answer_only = ids_of(tiny_tokenizer, CONVERSATION[:1])
    rows = [ids[: len(first_answer_only) + 3], ids]
    assert conversations_from_token_ids(tiny_tokenizer, rows) == [CONVERSATION]


def test_a_row_that_is_not_phi3_is_an_error(tiny_tokenizer):
    ids = tiny_tokenizer("plain prose with no turns <|end|>", add_special_tokens=False)["input_ids"]
    with pytest.raises(DataError, match="prepared row 0"):
        conversations_from_token_ids(tiny_tokenizer, [ids])
