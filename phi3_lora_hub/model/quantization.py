"""QLoRA: 4-bit NF4 loading of the base model, checked before anything is downloaded."""

from __future__ import annotations

import importlib.util

from phi3_lora_hub.errors import ConfigError, ModelError
from phi3_lora_hub.hardware import Hardware

QUANTIZATION_MODES = (None, "4bit")


def check_quantization(mode: str | None, hardware: Hardware) -> None:
    """Raise a clear error when ``mode`` is unknown or this machine cannot run it (before any download)."""
    if mode not in QUANTIZATION_MODES:
        raise ConfigError(f"quantization must be None or '4bit', got {mode!r}.")
    if mode is None:
        return
    if not hardware.cuda:
        raise ModelError(
            "quantization='4bit' (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run on this machine "
            "(no GPU found). Train without quantization here, or run on a GPU."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("quantization='4bit' needs bitsandbytes: pip install 'phi3-lora-hub[qlora]'.")


def bnb_4bit_config(hardware: Hardware):
    """NF4 with double quantization and bf16 compute (fp16 on GPUs without bf16): the QLoRA paper's setting."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if hardware.bf16 else torch.float16,
        bnb_4bit_quant_storage=torch.bfloat16 if hardware.bf16 else torch.float16,
    )
