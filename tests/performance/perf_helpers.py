"""Small random Phi-3 models and examples for the performance correctness tests (float32, CPU, deterministic)."""

from __future__ import annotations

import torch


def random_phi3(attn_implementation: str = "sdpa", *, sliding_window: int = 2047, vocab_size: int = 320, seed: int = 0):
    """A randomly initialised ``Phi3ForCausalLM`` small enough to run in milliseconds, in eval mode."""
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        original_max_position_embeddings=512,
        sliding_window=sliding_window,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(seed)
    return Phi3ForCausalLM(config).eval()


def random_examples(lengths: list[int], *, vocab_size: int = 320, seed: int = 1) -> list[dict[str, list[int]]]:
    """Pre-tokenized examples of the given lengths; the first third of each is prompt (label -100)."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for length in lengths:
        ids = torch.randint(3, vocab_size, (length,), generator=generator).tolist()
        prompt = max(1, length // 3)
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return examples
