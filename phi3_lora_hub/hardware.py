"""What this machine can do, read once: the facts the Phi-3 defaults depend on."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Hardware:
    """The accelerator facts that decide precision, attention kernel and memory savers."""

    cuda: bool
    bf16: bool
    """True when the GPU computes in bfloat16 natively (Ampere or newer)."""
    flash_attention: bool
    """True when ``flash_attn`` is importable and there is a GPU to run it on."""
    device_name: str
    gpu_memory_bytes: int = 0
    """Total memory of the GPU in bytes; 0 without a GPU (or when unknown: memory-based defaults stay cautious)."""
    liger: bool = False
    """True when ``liger_kernel`` is importable and there is a GPU: the recipe then runs Liger's RMSNorm, RoPE and
    SwiGLU kernels, which keep fewer activations for the backward."""

    @property
    def attn_implementation(self) -> str:
        """FlashAttention 2 on CUDA when installed (it also makes padding-free batches exact), else SDPA."""
        return "flash_attention_2" if self.flash_attention else "sdpa"


@lru_cache(maxsize=1)
def detect_hardware() -> Hardware:
    """Inspect the machine (cached: the answer does not change while the process runs)."""
    import torch

    cuda = torch.cuda.is_available()
    return Hardware(
        cuda=cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        flash_attention=cuda and importlib.util.find_spec("flash_attn") is not None,
        device_name=torch.cuda.get_device_name(0) if cuda else "cpu",
        gpu_memory_bytes=torch.cuda.get_device_properties(0).total_memory if cuda else 0,
        liger=cuda and importlib.util.find_spec("liger_kernel") is not None,
    )
