"""``CheckpointFilesCallback``: the run files that make every checkpoint a usable, self-describing adapter.

Works with a plain ``transformers.Trainer`` or TRL ``SFTTrainer``; the recipe installs it with its own values::

    from phi3_lora_hub import CheckpointFilesCallback

    trainer = SFTTrainer(..., callbacks=[CheckpointFilesCallback(data_report={"train": {"source": "chats.jsonl"}})])

Each ``checkpoint-N`` then stops generating on Phi-3's end-of-turn tokens (``generation_config.json``) and says
how it was made (the recipe YAML, the data report), and its model card shows it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import (
    GenerationConfig,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from phi3_lora_hub.generation import phi3_generation_config
from phi3_lora_hub.hub.files import DATA_REPORT_FILE, RECIPE_FILE


class CheckpointFilesCallback(TrainerCallback):
    """Writes the generation config, and the recipe YAML and data report when given, into every checkpoint.

    Args:
        recipe_yaml: the text of ``phi3_lora_recipe.yaml`` (e.g. ``Phi3LoraRecipe.to_yaml()``); omitted when ``None``.
        generation_config: the ``generation_config.json`` to write; default: Phi-3's (its three stop ids, from
            the Trainer's tokenizer, ``processing_class``).
        data_report: the contents of ``data_report.json``: ``{"train": {...}, "eval": {...}}`` with the fields of
            :class:`~phi3_lora_hub.data.prepare.DataReport` (``source``, ``rows_used``, ``trained_tokens``, ...),
            as the model card reads them; omitted when ``None``.

    Put it before the callbacks that read or upload checkpoints (``ModelCardCallback``, ``HubPushCallback``).
    """

    def __init__(
        self,
        *,
        recipe_yaml: str | None = None,
        generation_config: GenerationConfig | None = None,
        data_report: Mapping[str, Any] | None = None,
    ) -> None:
        self.recipe_yaml = recipe_yaml
        self.generation_config = generation_config
        self.data_report = data_report

    def write(self, directory: str | Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        """Write the files into ``directory`` (created if missing).

        Without a ``generation_config`` given, ``tokenizer`` supplies Phi-3's stop ids; with neither, no
        ``generation_config.json`` is written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        generation = self.generation_config
        if generation is None and tokenizer is not None:
            generation = phi3_generation_config(tokenizer)
        if generation is not None:
            generation.save_pretrained(directory)
        if self.recipe_yaml is not None:
            (directory / RECIPE_FILE).write_text(self.recipe_yaml, encoding="utf-8")
        if self.data_report is not None:
            (directory / DATA_REPORT_FILE).write_text(json.dumps(self.data_report, indent=2))

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        # The processes that wrote the checkpoint (the main one; each node's first with save_on_each_node) add to it.
        if args.should_save:
            self.write(Path(args.output_dir) / f"checkpoint-{state.global_step}", kwargs.get("processing_class"))
        return control
