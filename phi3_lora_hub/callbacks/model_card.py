"""``ModelCardCallback``: a model card (``README.md`` + ``loss_curve.png``) in every checkpoint of any Trainer.

Works with a plain ``transformers.Trainer`` or TRL ``SFTTrainer``; the recipe installs it with its own settings::

    from phi3_lora_hub import ModelCardCallback

    trainer = SFTTrainer(..., callbacks=[ModelCardCallback(base_model="microsoft/Phi-3-mini-4k-instruct")])

At each save the card is rendered from what the checkpoint holds: ``trainer_state.json`` (the loss history up to
its step, the step itself) and whichever run files other callbacks or the recipe put there (data report, sample
generations, recipe YAML, generation config, evaluation report). Settings no file records come from the
constructor; the Trainer's arguments fill in the training settings when no recipe YAML lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from phi3_lora_hub.cards.context import CardOptions
from phi3_lora_hub.cards.render import check_template, write_card
from phi3_lora_hub.evaluation.report import EvaluationReport


def training_hyperparameters(args: TrainingArguments) -> dict[str, Any]:
    """The Trainer's arguments as plain values, without any ``*_token`` field (a card or file may be published)."""
    return {key: value for key, value in args.to_dict().items() if not key.endswith("token")}


class ModelCardCallback(TrainerCallback):
    """Writes the model card of each checkpoint into ``checkpoint-N/`` on the processes that save it.

    Args:
        repo_id: the ``namespace/name`` the card's code loads the adapter from; default: the checkpoint directory.
        base_model: the base model's Hub id (or path); default: what the checkpoint's files record (the adapter
            config's ``base_model_name_or_path``).
        dataset: what the adapter is trained on, a Hub dataset id or a few words; default: the checkpoint's data
            report, else "an unnamed dataset".
        template: a Jinja model card template of your own (checked now); default: the bundled one.
        license: ``license`` of the card metadata.
        evaluation: an evaluation report to show in every card written from now on (else each directory's own
            ``eval_results.json``, when it has one); it may also be set later, e.g. before :meth:`write`.

    Put it after the callbacks that add files to checkpoints (sample generations, checkpoint files) and before one
    that uploads them (``HubPushCallback``, which renders a card of its own for where it pushes).
    """

    def __init__(
        self,
        repo_id: str | None = None,
        *,
        base_model: str | None = None,
        dataset: str | None = None,
        template: str | Path | None = None,
        license: str = "mit",
        evaluation: EvaluationReport | None = None,
    ) -> None:
        self.repo_id = repo_id
        self.base_model = base_model
        self.dataset = dataset
        self.template = None if template is None else check_template(template)  # wrong now, not at the first save
        self.license = license
        self.evaluation = evaluation

    def __repr__(self) -> str:
        return f"ModelCardCallback(repo_id={self.repo_id!r}, base_model={self.base_model!r})"

    def write(self, directory: str | Path, args: TrainingArguments | None = None) -> ModelCard:
        """Write ``README.md`` and ``loss_curve.png`` for the adapter or checkpoint in ``directory``; return the card.

        ``args`` supply the training settings when ``directory`` holds neither a recipe YAML nor
        ``training_args.json``.
        """
        options = CardOptions(
            repo_id=self.repo_id or str(directory),
            license=self.license,
            base_model=self.base_model,
            dataset=self.dataset,
            training_args=None if args is None else training_hyperparameters(args),
        )
        return write_card(directory, options, self.template, evaluation=self.evaluation)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        # The processes that wrote the checkpoint (the main one; each node's first with save_on_each_node) add to it.
        if args.should_save:
            self.write(Path(args.output_dir) / f"checkpoint-{state.global_step}", args)
        return control
