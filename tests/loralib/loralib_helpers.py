"""Helpers for the loralib backend tests: small random Phi-3 models built in memory, LoRA weights made non-zero.

A fresh LoRA layer has ``lora_B = 0`` (or ``lora_A = 0`` for embeddings), so its output equals the base model's
whatever the conversion does; every equivalence test therefore fills the LoRA tensors with random values first.
"""

from __future__ import annotations

import torch

VOCAB = 128


def random_phi3(seed: int = 0, *, kv_heads: int = 4, dtype: torch.dtype = torch.float32):
    """A 2-layer Phi-3 with random weights (same seed, same weights), in eval mode like ``from_pretrained``."""
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(
        vocab_size=VOCAB,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        original_max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return Phi3ForCausalLM(config).to(dtype).eval()


def fill_lora(model, seed: int = 1, scale: float = 0.2) -> None:
    """Give every LoRA tensor of ``model`` (loralib or PEFT) random values, as training would."""
    from phi3_lora_hub.loralib_backend.merging import unmerged

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad(), unmerged(model):  # never change LoRA weights under a merged loralib layer
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def input_ids(seed: int = 7) -> torch.Tensor:
    return torch.randint(3, VOCAB, (3, 12), generator=torch.Generator().manual_seed(seed))


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()
