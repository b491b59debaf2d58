"""Perplexity and stop rate computed from a real (tiny) model, checked against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from phi3_lora_hub import phi3_format
from phi3_lora_hub.data.tokenization import IGNORE_INDEX, tokenize_conversations
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.evaluation.metrics import load_metric
from phi3_lora_hub.generation import generate_replies

CONVERSATIONS = [
    [
        {"role": "system", "content": "You are Compass, a concise geography assistant."},
        {"role": "user", "content": "What is the capital of Peru?"},
        {"role": "assistant", "content": "The capital of Peru is Lima. Safe travels!"},
    ],
    [
        {"role": "user", "content": "Where is Kenya?"},
        {"role": "assistant", "content": "Kenya is in Africa."},
        {"role": "user", "content": "And the currency?"},
        {"role": "assistant", "content": "Kenya uses the shilling. Safe travels!"},
    ],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help you today?"}],
]


def direct_nll(model, tokenizer, conversation) -> tuple[float, int]:
    """Sum of -log p(token) over assistant tokens, from one unpadded forward pass."""
    batch = tokenize_conversations(tokenizer, [conversation])
    ids, labels = torch.tensor(batch.input_ids), torch.tensor(batch.labels)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits.double(), dim=-1)
    total, count = 0.0, 0
    for position in range(1, ids.shape[1]):
        if labels[0, position] != IGNORE_INDEX:
            total -= float(log_probs[0, position - 1, ids[0, position]])
            count += 1
    return total, count


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    from phi3_lora_hub.model.loading import load_for_inference

    return load_for_inference(str(tiny_model_dir))


def test_the_mask_covers_exactly_the_answers(base):
    _, tokenizer = base
    batch = tokenize_conversations(tokenizer, [CONVERSATIONS[1]])
    scored = [token for token, label in zip(batch.input_ids[0], batch.labels[0], strict=True) if label != IGNORE_INDEX]
    text = tokenizer.decode(scored, skip_special_tokens=False)
    assert text.replace(" ", "") == (
        "Kenya is in Africa.<|end|>Kenya uses the shilling. Safe travels!<|end|>".replace(" ", "")
    )


def test_perplexity_equals_a_direct_computation_from_logits(base):
    model, tokenizer = base
    sums = [direct_nll(model, tokenizer, conversation) for conversation in CONVERSATIONS]
    total, count = sum(s for s, _ in sums), sum(c for _, c in sums)
    # batch_size=2: padded batches must give the unpadded numbers.
    result = load_metric("perplexity").compute(
        conversations=CONVERSATIONS, model=model, tokenizer=tokenizer, batch_size=2
    )
    assert result["scored_tokens"] == count
    assert result["mean_nll"] == pytest.approx(total / count, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert result["perplexities"] == pytest.approx([math.exp(s / c) for s, c in sums], rel=1e-5)
    everything = load_metric("perplexity").compute(
        conversations=CONVERSATIONS, model=model, tokenizer=tokenizer, assistant_only=False
    )
    assert everything["scored_tokens"] > count


def test_perplexity_scores_the_evaluated_model_itself(base, trained_run, tiny_model_dir):
    """With an adapter, perplexity is the adapter's; with the adapter disabled, exactly the base model's."""
    from phi3_lora_hub.evaluation.models import ModelSpec, active_adapter, load_with_adapters, resolve_adapter

    plain, tokenizer = base
    adapter = resolve_adapter(ModelSpec.parse(str(trained_run.adapter_dir)))
    model, _ = load_with_adapters(str(tiny_model_dir), {"a": adapter})
    metric = load_metric("perplexity")
    with active_adapter(model, None):
        as_base = metric.compute(conversations=CONVERSATIONS, model=model, tokenizer=tokenizer)["perplexity"]
    with active_adapter(model, "a"):
        sums = [direct_nll(model, tokenizer, conversation) for conversation in CONVERSATIONS]
        with_adapter = metric.compute(conversations=CONVERSATIONS, model=model, tokenizer=tokenizer)["perplexity"]
    plain_base = metric.compute(conversations=CONVERSATIONS, model=plain, tokenizer=tokenizer)["perplexity"]
    assert as_base == pytest.approx(plain_base, rel=1e-5)
    assert with_adapter == pytest.approx(math.exp(sum(s for s, _ in sums) / sum(c for _, c in sums)), rel=1e-5)
    assert with_adapter != pytest.approx(as_base, rel=1e-2)
    assert not any(p.requires_grad for p in model.parameters())  # switching adapters kept them frozen


def test_stop_rate_of_a_model_that_stops_and_one_that_never_does(base, tiny_model_dir):
    from phi3_lora_hub.model.loading import load_for_inference

    model, tokenizer = base
    prompts = [conversation[:-1] for conversation in CONVERSATIONS] * 2
    params = chat_generation_config(max_new_tokens=40)
    stopping = generate_replies(model, tokenizer, prompts, params, batch_size=4)
    assert all(g.finish_reason == "stop" for g in stopping)
    assert all(g.raw_text.endswith(phi3_format.STOP_TOKENS) for g in stopping)

    # The classic broken fine-tune: the end-of-turn tokens can never win. Zeroed output rows give those tokens
    # logit 0, below the best other token, so greedy decoding runs to max_new_tokens every time.
    rambling, _ = load_for_inference(str(tiny_model_dir))
    stop_ids = [tokenizer.convert_tokens_to_ids(token) for token in phi3_format.STOP_TOKENS]
    with torch.no_grad():
        rambling.lm_head.weight[stop_ids] = 0.0
    never = generate_replies(rambling, tokenizer, prompts, params, batch_size=4)
    assert all(g.finish_reason == "length" and g.new_tokens == 40 for g in never)

    metric = load_metric("stop_rate")
    assert metric.compute(predictions=[g.raw_text for g in stopping])["stop_rate"] == 1.0
    assert metric.compute(predictions=[g.raw_text for g in never])["stop_rate"] == 0.0
    half = [g.raw_text for g in stopping[:3]] + [g.raw_text for g in never[:3]]
    assert metric.compute(predictions=half)["stop_rate"] == 0.5


def test_generation_leaves_the_global_rng_alone(base):
    """Sample generations run mid-training: seeding them must not change training's randomness."""
    model, tokenizer = base
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    generate_replies(
        model, tokenizer, [CONVERSATIONS[0][:-1]], chat_generation_config(max_new_tokens=4, temperature=0.7, seed=5)
    )
    assert torch.equal(before, torch.get_rng_state())
