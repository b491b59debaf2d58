"""phi3-lora-hub: fine-tune Phi-3 Mini with LoRA on your own chat data, publish every checkpoint to the Hub.

    from phi3_lora_hub import Phi3LoraRecipe

    result = Phi3LoraRecipe(dataset="my_chats.jsonl", hub_model_id="me/phi3-chat-lora").train()

Heavy dependencies (torch, transformers, trl) are imported on first use, so ``import phi3_lora_hub`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from phi3_lora_hub.errors import ConfigError, DataError, DataProblem, ModelError, Phi3LoraHubError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from phi3_lora_hub.recipe import Phi3LoraRecipe
    from phi3_lora_hub.result import TrainResult

_LAZY = {
    "Phi3LoraRecipe": "phi3_lora_hub.recipe",
    "TrainResult": "phi3_lora_hub.result",
}

__all__ = [
    "ConfigError",
    "DataError",
    "DataProblem",
    "ModelError",
    "Phi3LoraHubError",
    "Phi3LoraRecipe",
    "TrainResult",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'phi3_lora_hub' has no attribute {name!r}")
