"""The callback that makes every checkpoint a usable, self-describing adapter (the recipe always installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transformers import TrainerCallback

if TYPE_CHECKING:
    from phi3_lora_hub.recipe import Phi3LoraRecipe


class CheckpointArtifactsCallback(TrainerCallback):
    """Writes the recipe YAML, the Phi-3 generation config, the data report and the model card into every checkpoint.

    So each ``checkpoint-N`` is a usable adapter on its own: it stops on the right tokens and says how it was made.
    """

    def __init__(self, recipe: Phi3LoraRecipe) -> None:
        self.recipe = recipe

    def on_save(self, args, state, control, **kwargs):
        # The processes that wrote the checkpoint (the main one; each node's first with save_on_each_node) add to it.
        if args.should_save:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.recipe.write_artifacts(checkpoint)
            self.recipe.write_card(checkpoint)
        return control
