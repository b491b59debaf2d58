"""Assistant-only labels: the trained tokens decode to exactly each answer plus its closing <|end|>."""

from __future__ import annotations

import pytest

from phi3_lora_hub.data.tokenization import IGNORE_INDEX, tokenize_conversations

MULTI_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And Japan? Use 日本 please."},
    {"role": "assistant", "content": "Tokyo (東京), 100% sure!"},
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "You're welcome.\nBye."},
]


def trained_segments(tokenizer, ids, labels):
    segments, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    return [tokenizer.decode(segment) for segment in segments]


@pytest.mark.parametrize("tokenizer_fixture", ["tiny_tokenizer", "real_tokenizer"])
def test_masks_are_exact_for_every_assistant_turn(tokenizer_fixture, request):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    batch = tokenize_conversations(tokenizer, [MULTI_TURN])
    answers = [m["content"] + "<|end|>" for m in MULTI_TURN if m["role"] == "assistant"]
    assert trained_segments(tokenizer, batch.input_ids[0], batch.labels[0]) == answers
    # The full sequence is what the tokenizer's own chat template produces.
    assert batch.input_ids[0] == tokenizer.apply_chat_template(MULTI_TURN, tokenize=True, return_dict=False)


def test_whole_sequence_switch_trains_on_everything(tiny_tokenizer):
    batch = tokenize_conversations(tiny_tokenizer, [MULTI_TURN], assistant_only_loss=False)
    assert batch.labels[0] == batch.input_ids[0]


def test_real_tokenizer_ids_of_the_closing_tokens(real_tokenizer):
    batch = tokenize_conversations(real_tokenizer, [MULTI_TURN[1:3]])
    ids, labels = batch.input_ids[0], batch.labels[0]
    assert ids[0] == 32010 and 32001 in ids and ids[-1] == 32000
    trained = [label for label in labels if label != IGNORE_INDEX]
    assert trained[-1] == 32007  # <|end|> closes the answer and is learned
    assert 32001 not in trained and 32000 not in trained
