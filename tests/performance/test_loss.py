"""The chunked loss head equals plain cross-entropy over full logits, value and gradients, at any chunk size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from phi3_lora_hub.training.loss import linear_cross_entropy


def _inputs(tokens: int = 23, hidden: int = 16, vocab: int = 101, *, weight_grad: bool = False):
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(tokens, hidden, generator=generator, requires_grad=True)
    weight = torch.randn(vocab, hidden, generator=generator, requires_grad=weight_grad)
    targets = torch.randint(0, vocab, (tokens,), generator=generator)
    return states, weight, targets


@pytest.mark.parametrize("chunk", [1, 5, 23, 1000])
def test_loss_and_gradients_equal_full_cross_entropy(chunk):
    states, weight, targets = _inputs(weight_grad=True)
    logits = states @ weight.t()
    expected = F.cross_entropy(logits, targets, reduction="sum")
    expected_grads = torch.autograd.grad(expected * 0.37, (states, weight))

    parts = linear_cross_entropy(states, weight, targets, chunk_tokens=chunk)
    grads = torch.autograd.grad(parts.loss_sum * 0.37, (states, weight))
    assert torch.allclose(parts.loss_sum, expected, rtol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-5)
    probabilities = logits.softmax(-1)
    entropy = -(probabilities * logits.log_softmax(-1)).sum()
    assert torch.allclose(parts.entropy_sum, entropy, rtol=1e-4)
    assert int(parts.correct) == int((logits.argmax(-1) == targets).sum())
    assert parts.tokens == len(targets)


def test_frozen_head_gets_no_gradient_and_no_grad_mode_builds_none():
    states, weight, targets = _inputs()
    parts = linear_cross_entropy(states, weight, targets, chunk_tokens=4)
    parts.loss_sum.backward()
    assert weight.grad is None and states.grad is not None
    with torch.no_grad():
        evaluation = linear_cross_entropy(states, weight, targets)
    assert evaluation.loss_sum.grad_fn is None
    assert torch.allclose(evaluation.loss_sum, parts.loss_sum)


def test_a_batch_without_trained_tokens_gives_a_zero_loss_that_backpropagates():
    states, weight, targets = _inputs()
    parts = linear_cross_entropy(states[:0], weight, targets[:0])
    parts.loss_sum.backward()
    assert float(parts.loss_sum.detach()) == 0.0 and parts.tokens == 0
    assert torch.count_nonzero(states.grad) == 0


def test_bf16_autocast_projects_in_bf16_and_reduces_in_float32():
    states, weight, targets = _inputs(tokens=64, hidden=32, vocab=257)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = linear_cross_entropy(states, weight, targets, chunk_tokens=16)
        logits = (states @ weight.t()).float()
    expected = F.cross_entropy(logits, targets, reduction="sum")
    assert parts.loss_sum.dtype == torch.float32
    assert torch.allclose(parts.loss_sum, expected, rtol=1e-3)
    parts.loss_sum.backward()
    assert states.grad.dtype == states.dtype
