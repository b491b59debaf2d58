"""The one generation helper: batched answers equal one-at-a-time ones, in the order given, whatever the batching."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from phi3_lora_hub import phi3_format
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.generation import generate_replies, length_batches
from phi3_lora_hub.model.loading import stop_token_ids

QUESTIONS = [
    "Where is Peru?",
    "Tell me, in a few words and without any detail at all, where the country of Kenya can be found on a map.",
    "Hi",
    "What is the capital of Peru, and which ocean lies to its west? Answer briefly please.",
    "Where is Chile?",
]
CONVERSATIONS = [[{"role": "user", "content": question}] for question in QUESTIONS]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def plain_loop(model, tokenizer, conversations, max_new_tokens: int) -> list[list[int]]:
    """The reference: one unpadded prompt at a time through ``model.generate``, cut at the first stop token."""
    stops = stop_token_ids(tokenizer)
    answers = []
    for messages in conversations:
        text = phi3_format.render(messages, add_generation_prompt=True).text
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            output = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.convert_tokens_to_ids(phi3_format.EOS),
            )
        row = output[0, ids.shape[1] :].tolist()
        answers.append(next((row[:i] for i, token in enumerate(row) if token in stops), row))
    return answers


def test_greedy_batched_answers_equal_a_plain_one_prompt_at_a_time_generate_loop(model, tiny_tokenizer):
    """Batching, left padding and length sorting change nothing in greedy answers: token for token."""
    replies = generate_replies(
        model, tiny_tokenizer, CONVERSATIONS, chat_generation_config(max_new_tokens=24), batch_size=3
    )
    expected = plain_loop(model, tiny_tokenizer, CONVERSATIONS, 24)
    assert [r.new_tokens for r in replies] == [len(ids) for ids in expected]
    assert [r.text for r in replies] == [
        tiny_tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in expected
    ]


def test_replies_come_back_in_the_order_given_after_batching_by_length(model, tiny_tokenizer):
    """Batches are formed longest prompt first; each reply still answers the conversation at its own index."""
    lengths = [len(tiny_tokenizer(q)["input_ids"]) for q in QUESTIONS]
    assert lengths != sorted(lengths, reverse=True)  # the order given is not the batching order
    config = chat_generation_config(max_new_tokens=16)
    batched = generate_replies(model, tiny_tokenizer, CONVERSATIONS, config, batch_size=2)
    alone = [generate_replies(model, tiny_tokenizer, [c], config, batch_size=1)[0] for c in CONVERSATIONS]
    assert [r.text for r in batched] == [r.text for r in alone]
    assert len({r.text for r in alone}) > 1  # the answers differ, so a mix-up would show


def test_batches_hold_prompts_of_similar_length_longest_first():
    assert length_batches([5, 40, 7, 39, 6], 2) == [[1, 3], [2, 4], [0]]
    with pytest.raises(ValueError, match="batch_size"):
        length_batches([1], 0)


def test_generating_leaves_the_tokenizer_and_the_global_rng_as_they_were(model, tiny_tokenizer):
    torch.manual_seed(1234)
    before, side = torch.get_rng_state(), tiny_tokenizer.padding_side
    generate_replies(model, tiny_tokenizer, CONVERSATIONS[:2], chat_generation_config(temperature=0.7, seed=5))
    assert torch.equal(before, torch.get_rng_state()) and tiny_tokenizer.padding_side == side
