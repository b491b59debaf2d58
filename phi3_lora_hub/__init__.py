"""phi3-lora-hub: fine-tune Phi-3 Mini with LoRA on your own chat data, publish every checkpoint to the Hub.

    from phi3_lora_hub import Phi3LoraRecipe

    result = Phi3LoraRecipe(dataset="my_chats.jsonl", hub_model_id="me/phi3-chat-lora").train()

Heavy dependencies (torch, transformers, trl) are imported on first use, so ``import phi3_lora_hub`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phi3_lora_hub.errors import ConfigError, DataError, DataProblem, ModelError, Phi3LoraHubError
from phi3_lora_hub.lazy_exports import lazy_exports
from phi3_lora_hub.logs import install_default_handler, silence_known_dependency_warnings
from phi3_lora_hub.version import __version__

if TYPE_CHECKING:
    from phi3_lora_hub.cards.card_callback import ModelCardCallback
    from phi3_lora_hub.evaluation.samples import SampleGenerationsCallback
    from phi3_lora_hub.hub.push_callback import HubPushCallback
    from phi3_lora_hub.recipe import Phi3LoraRecipe
    from phi3_lora_hub.result import TrainResult
    from phi3_lora_hub.training.checkpoint_files import CheckpointFilesCallback

_EXPORTS = {
    "Phi3LoraRecipe": "recipe",
    "TrainResult": "result",
    "HubPushCallback": "hub.push_callback",
    "ModelCardCallback": "cards.card_callback",
    "CheckpointFilesCallback": "training.checkpoint_files",
    "SampleGenerationsCallback": "evaluation.samples",
}

__all__ = [
    "CheckpointFilesCallback",
    "ConfigError",
    "DataError",
    "DataProblem",
    "HubPushCallback",
    "ModelCardCallback",
    "ModelError",
    "Phi3LoraHubError",
    "Phi3LoraRecipe",
    "SampleGenerationsCallback",
    "TrainResult",
    "__version__",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)

install_default_handler()  # progress at INFO without any logging setup (see phi3_lora_hub.logs)
silence_known_dependency_warnings()
