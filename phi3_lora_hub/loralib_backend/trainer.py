"""TRL's ``SFTTrainer`` for a loralib-patched Phi-3: same training path, loralib checkpoints.

Differences from the plain trainer, each because a loralib model is a plain ``PreTrainedModel`` to the Trainer:

- checkpoints hold the LoRA weights (``lora_state_dict``, plus the converted PEFT adapter), not the whole model;
- resuming and ``load_best_model_at_end`` read those weights back, checked key by key;
- training, evaluation and prediction run with loralib's merge-on-``eval()`` off, so the Trainer's
  ``model.eval()``/``model.train()`` switches never add and subtract the update from the pretrained weights.
"""

from __future__ import annotations

import os
from typing import Any

from transformers.trainer import TRAINING_ARGS_NAME
from trl import SFTTrainer

from phi3_lora_hub.loralib_backend.checkpoint import save_adapter
from phi3_lora_hub.loralib_backend.loading import load_loralib_checkpoint
from phi3_lora_hub.loralib_backend.merging import merging_disabled
from phi3_lora_hub.loralib_backend.spec import LoralibSpec
from phi3_lora_hub.training.eval_loss import TokenWeightedEvalLoss
from phi3_lora_hub.training.trainer import RecipeCardsMixin


class LoralibSFTTrainer(RecipeCardsMixin, TokenWeightedEvalLoss, SFTTrainer):
    """``SFTTrainer`` for a model already patched by :func:`~phi3_lora_hub.loralib_backend.patching.patch_phi3`.

    Args:
        loralib_spec: the spec the model was patched with (saved next to every checkpoint).
        base_model_name_or_path, base_model_revision: recorded in checkpoints and in the PEFT adapter config.
        Everything else is passed to ``SFTTrainer`` (``peft_config`` must not be: the LoRA layers are loralib's).
    """

    def __init__(
        self,
        *args: Any,
        loralib_spec: LoralibSpec,
        base_model_name_or_path: str | None = None,
        base_model_revision: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("peft_config") is not None:
            raise ValueError("LoralibSFTTrainer trains loralib layers; do not pass a peft_config.")
        self.loralib_spec = loralib_spec
        self.base_model_name_or_path = base_model_name_or_path
        self.base_model_revision = base_model_revision
        super().__init__(*args, **kwargs)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        with merging_disabled(self.model):
            return super().train(*args, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        with merging_disabled(self.model):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        with merging_disabled(self.model):
            return super().predict(*args, **kwargs)

    def save_adapter(self, output_dir: str | os.PathLike) -> None:
        """Write the loralib checkpoint and the equivalent PEFT adapter to ``output_dir``."""
        save_adapter(
            self.model,
            self.loralib_spec,
            output_dir,
            base_model_name_or_path=self.base_model_name_or_path,
            revision=self.base_model_revision,
        )

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        import torch

        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self.save_adapter(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        load_loralib_checkpoint(model if model is not None else self.model, resume_from_checkpoint, strict=True)

    def _load_best_model(self) -> None:
        load_loralib_checkpoint(self.model, self.state.best_model_checkpoint, strict=True)
