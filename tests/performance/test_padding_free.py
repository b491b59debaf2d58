"""Padding-free batches are exact: no attention across sequence boundaries, same loss and gradients as padding.

The padded reference is the plain transformers forward with an attention mask and its own loss; the padding-free
side is TRL's padding-free collator (one concatenated row with per-sequence position ids) through the recipe's
attention and loss head, as ``Phi3SFTTrainer`` runs it.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from perf_helpers import random_examples, random_phi3
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from phi3_lora_hub.training import attention as attention_module
from phi3_lora_hub.training.attention import VARLEN_SDPA, per_sequence_attention_pays, register_varlen_sdpa
from phi3_lora_hub.training.trainer import install_fused_loss

LENGTHS = [37, 5, 64, 18, 2, 51]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def padded_batch(examples):
    return DataCollatorForLanguageModeling(pad_token_id=0)(examples)


def padding_free_batch(examples):
    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)


def padded_loss(model, examples) -> torch.Tensor:
    batch = padded_batch(examples)
    return model(**batch).loss


def padding_free_loss(model, examples) -> torch.Tensor:
    install_fused_loss(model)
    parts = model(**padding_free_batch(examples), phi3_fused_loss=True)
    return parts.loss_sum / parts.tokens


@pytest.mark.parametrize("attention", [VARLEN_SDPA, "sdpa", "eager"])
def test_padding_free_loss_equals_padded_loss(attention):
    register_varlen_sdpa()
    reference = random_phi3("sdpa")
    model = random_phi3(attention)
    examples = random_examples(LENGTHS)
    expected = padded_loss(reference, examples)
    assert torch.allclose(padding_free_loss(model, examples), expected, **TOLERANCE)


@pytest.mark.parametrize("attention", [VARLEN_SDPA, "sdpa"])
def test_padding_free_gradients_equal_padded_gradients(attention):
    # VARLEN_SDPA is the recipe's attention off CUDA, the stock "sdpa" over the packed row its attention on CUDA
    register_varlen_sdpa()
    examples = random_examples(LENGTHS)
    reference = random_phi3("sdpa").train()
    padded_loss(reference, examples).backward()
    model = random_phi3(attention).train()
    padding_free_loss(model, examples).backward()
    for (name, expected), actual in zip(reference.named_parameters(), model.parameters(), strict=True):
        assert torch.allclose(actual.grad, expected.grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize(("attention", "use_cache"), [(VARLEN_SDPA, False), (VARLEN_SDPA, True), ("sdpa", False)])
def test_no_cross_contamination_between_packed_sequences(attention, use_cache):
    """Changing one sequence of a padding-free row leaves every other sequence's outputs alike.

    Stock SDPA isolates packed sequences only without a cache (training sets ``use_cache=False``): with a cache,
    transformers 5.24 skips the packed-sequence detection and builds a plain causal mask. The recipe's attention
    isolates them either way.
    """
    register_varlen_sdpa()
    model = random_phi3(attention)
    examples = random_examples(LENGTHS)
    changed = [dict(example) for example in examples]
    changed[2] = {"input_ids": [7] * LENGTHS[2], "labels": [7] * LENGTHS[2]}
    with torch.no_grad():
        before = model(**padding_free_batch(examples), use_cache=use_cache).logits[0]
        after = model(**padding_free_batch(changed), use_cache=use_cache).logits[0]
    starts = [0]
    for length in LENGTHS:
        starts.append(starts[-1] + length)
    for index, (start, end) in enumerate(itertools.pairwise(starts)):
        if index == 2:
            assert not torch.equal(before[start:end], after[start:end])
        else:
            assert torch.allclose(before[start:end], after[start:end], rtol=0, atol=1e-6), f"sequence {index} changed"


def test_each_packed_sequence_matches_it_alone():
    """The padding-free logits of every sequence equal those of the sequence run on its own."""
    register_varlen_sdpa()
    model = random_phi3(VARLEN_SDPA)
    examples = random_examples(LENGTHS)
    with torch.no_grad():
        packed = model(**padding_free_batch(examples), use_cache=False).logits[0]
        start = 0
        for example in examples:
            alone = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            end = start + len(example["input_ids"])
            assert torch.allclose(packed[start:end], alone, **TOLERANCE)
            start = end


def test_sliding_window_is_kept_inside_long_sequences():
    """Sequences longer than Phi-3's sliding window: the per-sequence band mask equals the stock padded one."""
    register_varlen_sdpa()
    examples = random_examples([40, 9, 33])
    reference = random_phi3("sdpa", sliding_window=8)
    model = random_phi3(VARLEN_SDPA, sliding_window=8)
    assert torch.allclose(padding_free_loss(model, examples), padded_loss(reference, examples), **TOLERANCE)
    full_window = random_phi3(VARLEN_SDPA, sliding_window=2047)
    assert not torch.allclose(padding_free_loss(full_window, examples), padded_loss(reference, examples), **TOLERANCE)


def test_packed_position_ids_without_cu_seq_lens_are_isolated_too():
    """A caller passing only per-sequence position ids (several rows) gets the same isolation."""
    register_varlen_sdpa()
    model = random_phi3(VARLEN_SDPA)
    rows = [random_examples([6, 10], seed=3), random_examples([9, 7], seed=4)]
    input_ids = torch.tensor([[*a["input_ids"], *b["input_ids"]] for a, b in rows])
    position_ids = torch.tensor([[*range(6), *range(10)], [*range(9), *range(7)]])
    with torch.no_grad():
        logits = model(input_ids=input_ids, position_ids=position_ids).logits
        for row, (first, second) in enumerate(rows):
            split = len(first["input_ids"])
            alone = model(input_ids=torch.tensor([second["input_ids"]])).logits[0]
            assert torch.allclose(logits[row, split:], alone, **TOLERANCE)


def test_generation_with_a_cache_is_unchanged():
    """Outside padding-free training (cached, padded generation) the attention is stock SDPA."""
    register_varlen_sdpa()
    prompts = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 11, 12, 13]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    outputs = []
    for attention in ("sdpa", VARLEN_SDPA):
        model = random_phi3(attention)
        outputs.append(
            model.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
        )
    assert torch.equal(outputs[0], outputs[1])


def test_the_sequence_bounds_are_read_once_per_forward_not_once_per_layer(monkeypatch):
    """Reading the bounds back from a GPU syncs it; every layer gets the same index tensors, so once is enough."""
    register_varlen_sdpa()
    model = random_phi3(VARLEN_SDPA)
    assert model.config.num_hidden_layers > 1
    reads = []
    read = attention_module.sequence_bounds
    monkeypatch.setattr(attention_module, "sequence_bounds", lambda *args: reads.append(args) or read(*args))
    with torch.no_grad():
        for lengths in ([7, 12], [12, 7]):  # a new batch with the same total length is read again
            reads.clear()
            model(**padding_free_batch(random_examples(lengths)))
            assert len(reads) == 1 and reads[0][1].tolist() == [0, lengths[0], 19]


def test_the_per_sequence_loop_runs_off_cuda_and_one_packed_sdpa_call_per_layer_runs_on_cuda():
    # on an H200 the loop's kernel per sequence per layer made the recipe 0.35x TRL's padding-free (issue 16 item 4)
    assert per_sequence_attention_pays(torch.device("cpu"))
    assert not per_sequence_attention_pays(torch.device("cuda", 0))
