"""Load the Phi-3 base model and its tokenizer once, for serving.

The config is checked to be Phi-3 before any weights are read, remote code is never run, and the tokenizer
must carry Phi-3's special tokens (:mod:`phi3_lora_hub.model.loading`). The precision is chosen for serving:
bfloat16 on CPU and on GPUs that support it (Phi-3-mini in float32 does not fit a 16 GB CPU Space), float16 on
older GPUs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3_lora_hub.hardware import detect_hardware
from phi3_lora_hub.model.loading import load_base_model, load_phi3_config, load_tokenizer
from phi3_lora_hub.space.compat import BaseSignature

logger = logging.getLogger(__name__)


@dataclass
class ServedBase:
    """The base model ready to answer: model (in eval mode, frozen), tokenizer, and what adapters must match."""

    model: Any
    tokenizer: Any
    signature: BaseSignature
    context_tokens: int
    """Most tokens a prompt plus its answer may use."""
    name: str

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device


def serving_dtype(name: str, *, cuda: bool, bf16_supported: bool) -> str:
    """The torch dtype name to serve in: ``name`` itself unless it is ``auto``."""
    if name != "auto":
        return name
    if cuda:
        return "bfloat16" if bf16_supported else "float16"
    return "bfloat16"


def load_base(
    base_model: str,
    *,
    revision: str | None = None,
    aliases: tuple[str, ...] = (),
    dtype: str = "auto",
    token: str | None = None,
    max_context_tokens: int = 4096,
) -> ServedBase:
    """Load ``base_model`` (Hub id or local directory) and its tokenizer; ``ModelError`` if it is not Phi-3."""
    config = load_phi3_config(base_model, revision)
    hardware = detect_hardware()
    chosen = serving_dtype(dtype, cuda=hardware.cuda, bf16_supported=hardware.bf16)
    model = load_base_model(base_model, revision=revision, dtype=chosen, hardware=hardware, training=False, token=token)
    tokenizer = load_tokenizer(base_model, revision, for_training=False)
    names = [base_model, *aliases, getattr(config, "_name_or_path", "")]
    if Path(base_model).expanduser().is_dir():
        names.append(str(Path(base_model).expanduser().resolve()))
    context = min(max_context_tokens, int(getattr(config, "max_position_embeddings", max_context_tokens)))
    device = "cuda" if hardware.cuda else "cpu"
    logger.info("loaded base %s (%s, %s, context %d)", base_model, chosen, device, context)
    return ServedBase(model, tokenizer, BaseSignature.of(model, names), context, base_model)
