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
    from phi3_lora_hub.callbacks.checkpoint_files import CheckpointFilesCallback
    from phi3_lora_hub.callbacks.hub_push import HubPushCallback
    from phi3_lora_hub.callbacks.model_card import ModelCardCallback
    from phi3_lora_hub.callbacks.sample_generations import SampleGenerationsCallback
    from phi3_lora_hub.hub.adapter_push import push_adapter
    from phi3_lora_hub.hub.errors import HubAuthError, HubError, HubPushError, HubResumeError
    from phi3_lora_hub.hub.resume import resume_checkpoint_from_hub
    from phi3_lora_hub.recipe import Phi3LoraRecipe
    from phi3_lora_hub.result import TrainResult

_EXPORTS = {
    "Phi3LoraRecipe": "recipe",
    "TrainResult": "result",
    "HubPushCallback": "callbacks.hub_push",
    "ModelCardCallback": "callbacks.model_card",
    "CheckpointFilesCallback": "callbacks.checkpoint_files",
    "SampleGenerationsCallback": "callbacks.sample_generations",
    "push_adapter": "hub.adapter_push",
    "resume_checkpoint_from_hub": "hub.resume",
    "HubError": "hub.errors",
    "HubAuthError": "hub.errors",
    "HubPushError": "hub.errors",
    "HubResumeError": "hub.errors",
}

__all__ = [
    "CheckpointFilesCallback",
    "ConfigError",
    "DataError",
    "DataProblem",
    "HubAuthError",
    "HubError",
    "HubPushCallback",
    "HubPushError",
    "HubResumeError",
    "ModelCardCallback",
    "ModelError",
    "Phi3LoraHubError",
    "Phi3LoraRecipe",
    "SampleGenerationsCallback",
    "TrainResult",
    "__version__",
    "push_adapter",
    "resume_checkpoint_from_hub",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)

install_default_handler()  # progress at INFO without any logging setup (see phi3_lora_hub.logs)
silence_known_dependency_warnings()
