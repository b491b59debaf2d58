"""The Phi-3 chat format: rendering, parsing, and agreement with the real chat template."""

from __future__ import annotations

import pytest

from phi3_lora_hub import phi3_format

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Goodbye."},
]


def test_render_matches_the_documented_layout():
    rendered = phi3_format.render(CONVERSATION)
    assert rendered.text == (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n"
        "<|user|>\nBye<|end|>\n<|assistant|>\nGoodbye.<|end|>\n<|endoftext|>"
    )
    assert [rendered.text[s.start : s.end] for s in rendered.assistant_spans] == ["Hello!<|end|>", "Goodbye.<|end|>"]


def test_generation_prompt_ends_with_the_assistant_header():
    assert phi3_format.render(CONVERSATION[:2], add_generation_prompt=True).text.endswith("<|assistant|>\n")


def test_render_equals_the_tokenizer_template(tiny_tokenizer):
    for add in (False, True):
        expected = tiny_tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=add)
        assert phi3_format.render(CONVERSATION, add_generation_prompt=add).text == expected


def test_render_equals_the_real_phi3_template(real_tokenizer):
    for add in (False, True):
        expected = real_tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=add)
        assert phi3_format.render(CONVERSATION, add_generation_prompt=add).text == expected


def test_parse_round_trips_and_tolerates_loose_whitespace():
    assert phi3_format.parse(phi3_format.render(CONVERSATION).text) == CONVERSATION
    loose = "<|user|>\nWhen? <|end|>\n<|assistant|> \nNever <|end|>"
    assert phi3_format.parse(loose) == [
        {"role": "user", "content": "When?"},
        {"role": "assistant", "content": "Never"},
    ]


@pytest.mark.parametrize(
    "text",
    ["", "plain text", "<|user|>\nno end marker", "Hello <|user|>\nHi<|end|>", "<|user|>\nA<|placeholder1|>B<|end|>"],
)
def test_parse_rejects_text_not_in_the_format(text):
    with pytest.raises(ValueError):
        phi3_format.parse(text)


def test_stop_tokens_are_the_three_phi3_ids(real_tokenizer):
    assert real_tokenizer.convert_tokens_to_ids(list(phi3_format.STOP_TOKENS)) == [32000, 32001, 32007]
