"""``Phi3LoraRecipe``: fine-tune Phi-3 with LoRA on chat data in one call.

The recipe reads top to bottom: resolve the configuration (defaults for Phi-3 and this machine, the user's
overrides, validated), then ``train()`` loads the tokenizer, prepares the data (convert any supported format,
validate, tokenize with assistant-only labels), loads the base model, checks the LoRA targets, builds TRL's
``SFTTrainer`` with a PEFT LoRA config, trains, and saves the adapter with everything needed to use it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import GenerationConfig

from phi3_lora_hub.callbacks.checkpoint_files import CheckpointFilesCallback
from phi3_lora_hub.callbacks.model_card import ModelCardCallback
from phi3_lora_hub.cards.render import check_template
from phi3_lora_hub.config.field_types import check_values, coerce_numbers
from phi3_lora_hub.config.lora import build_lora_config, resolve_lora
from phi3_lora_hub.config.recipe_config import (
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    RecipeConfig,
    apply_override,
    check_keys,
    read_yaml_settings,
)
from phi3_lora_hub.config.training import resolve_training
from phi3_lora_hub.data.prepare import DataOptions, PreparedData, hold_out, prepare_dataset
from phi3_lora_hub.data.sources import check_split, read_rows
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.distributed.launch import prepare_launch
from phi3_lora_hub.distributed.processes import (
    global_batch_summary,
    is_main_process,
    main_process_first,
    save_trained_adapter,
)
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.perplexity import perplexity_from_nll
from phi3_lora_hub.evaluation.settings import resolve_evaluation
from phi3_lora_hub.generation import generate_replies, phi3_generation_config
from phi3_lora_hub.hardware import Hardware, detect_hardware
from phi3_lora_hub.loralib_backend.patching import patch_phi3
from phi3_lora_hub.loralib_backend.spec import LoralibSpec, is_loralib
from phi3_lora_hub.loralib_backend.trainer import LoralibSFTTrainer
from phi3_lora_hub.model.loading import load_base_model, load_for_inference, load_tokenizer, model_reference
from phi3_lora_hub.model.merging import merge_adapter
from phi3_lora_hub.model.quantization import check_quantization
from phi3_lora_hub.model.targets import check_target_modules
from phi3_lora_hub.model.tiny import resolve_model_alias
from phi3_lora_hub.result import TrainResult
from phi3_lora_hub.training.interrupt import reporting_interrupts
from phi3_lora_hub.training.progress import install_progress, quiet_library_progress_bars
from phi3_lora_hub.training.recipe_evaluation import evaluate_after_training, evaluate_recipe, sample_callback
from phi3_lora_hub.training.recipe_hub import check_resume_request, hub_callback_for, publishing, resume_point
from phi3_lora_hub.training.trainer import Phi3SFTTrainer, trainer_arguments

if TYPE_CHECKING:
    from phi3_lora_hub.callbacks.checkpoint_files import CheckpointFilesCallback
    from phi3_lora_hub.callbacks.model_card import ModelCardCallback

logger = logging.getLogger(__name__)

ADAPTER_SUBDIR = "adapter"


class Phi3LoraRecipe:
    """LoRA (or QLoRA) fine-tuning of a Phi-3 model on chat data, with defaults that are right for Phi-3.

    Args:
        model: Hub id, local directory, an already loaded Phi-3 ``PreTrainedModel``, or ``"tiny"``: the offline
            tiny Phi-3 (the real architecture at toy sizes), built on first use and cached.
        dataset: Hub dataset id, local file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``), ``datasets.Dataset``
            or ``DatasetDict``, or a list of dicts, in any supported chat format.
        training: ``trl.SFTConfig`` arguments merged over the recipe's defaults.
        lora: ``peft.LoraConfig`` arguments merged over the recipe's defaults; ``backend="loralib"`` trains
            Microsoft's loralib layers instead (see :mod:`phi3_lora_hub.loralib_backend`).
        evaluation: evaluation settings merged over ``phi3_lora_hub.evaluation.settings.EVALUATION_DEFAULTS``
            (the report written after training, the sample generations stored with each checkpoint).
        callbacks: extra ``transformers.TrainerCallback`` objects.
        **settings: any other :class:`~phi3_lora_hub.config.recipe_config.RecipeConfig` field
            (``output_dir``, ``eval_split``, ``format``, ``on_bad_rows``, ``quantization``, ``hub_model_id``, ...).

    Unknown keys anywhere raise :class:`~phi3_lora_hub.errors.ConfigError` naming the key and the closest valid one.
    """

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        dataset: Any = DEFAULT_DATASET,
        *,
        training: dict[str, Any] | None = None,
        lora: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        callbacks: list[Any] | None = None,
        **settings: Any,
    ) -> None:
        check_keys(settings, RecipeConfig.field_names(), "recipe")
        settings = coerce_numbers(settings, RecipeConfig)  # YAML 1.1 reads 1e-1 as a string
        check_values("", settings, RecipeConfig)  # e.g. max_train_samples: ten, before anything loads
        if isinstance(model, str):
            model = resolve_model_alias(model)  # "tiny": the offline tiny Phi-3, built on first use
        self.hardware: Hardware = detect_hardware()
        self._model_object = None if isinstance(model, (str, Path)) else model
        self._dataset_object = None if isinstance(dataset, (str, Path)) or dataset is None else dataset
        self.config = RecipeConfig(
            model=model_reference(model),
            dataset=str(dataset) if self._dataset_object is None and dataset is not None else None,
            training=resolve_training(training, self.hardware),
            lora=resolve_lora(lora),
            evaluation=resolve_evaluation(evaluation),
            **{
                "dtype": "bfloat16" if self.hardware.bf16 else "float32",
                "attn_implementation": self.hardware.attn_implementation,
                **settings,
            },
        )
        if is_loralib(self.config.lora) and self.config.quantization:
            raise ConfigError("lora backend='loralib' wraps plain nn.Linear layers: it cannot train QLoRA; use 'peft'.")
        self.callbacks = list(callbacks or [])

        self.hub_callback = hub_callback_for(self.config, self.callbacks)
        """Pushes every checkpoint to the Hub when ``hub_model_id`` is set (see ``phi3_lora_hub.hub``)."""
        self.trainer = None
        self.samples_callback = None
        self.tokenizer = None
        self.data: PreparedData | None = None

    # -- configuration ---------------------------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None, **kwargs: Any) -> Phi3LoraRecipe:
        """Build a recipe from a YAML file; ``overrides`` are ``key=value`` strings (``training.max_steps=10``)."""
        settings = load_recipe_settings(path, overrides)
        settings.update(kwargs)
        return cls(**settings)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Write the whole resolved configuration as YAML (``from_yaml`` reads it back to the same config)."""
        return self.config.to_yaml(path)

    # -- data ------------------------------------------------------------------------------------------------------

    def _data_source(self) -> Any:
        return self._dataset_object if self._dataset_object is not None else self.config.dataset

    def _check_splits(self) -> None:
        """Splits asked of sources that have none (a local file, a list) fail before the tokenizer or data load."""
        config = self.config
        check_split(self._data_source(), config.dataset_split)
        eval_source = config.eval_dataset if config.eval_dataset is not None else self._data_source()
        check_split(eval_source, config.eval_split)

    def data_options(self) -> DataOptions:
        """How the recipe reads chat data (format, bad rows, roles, ``max_length``): for any other data to match."""
        config = self.config
        return DataOptions(
            format=config.format,
            on_bad_rows=config.on_bad_rows,  # type: ignore[arg-type]
            role_map=config.role_map,
            text_part_types=tuple(config.text_part_types),
            assistant_only_loss=config.assistant_only_loss,
            max_length=config.training.get("max_length"),
        )

    def prepare_data(self, tokenizer=None) -> PreparedData:
        """Read, convert, validate and tokenize the training (and evaluation) data; raises ``DataError`` on bad rows.

        Under a launcher (``accelerate launch``, ``torchrun``) the first process of each node prepares the data and
        fills the on-disk cache while the others wait, then they read it from the cache.
        """
        self._check_splits()
        with main_process_first(self.config.training):
            return self._prepare_data(tokenizer)

    def _prepare_data(self, tokenizer=None) -> PreparedData:
        config = self.config
        tokenizer = tokenizer or self.load_tokenizer()
        options = self.data_options()
        source = self._data_source()
        if source is None:
            raise ConfigError("No dataset: pass dataset= (a Hub id, a file, a Dataset or a list of dicts).")
        raw = read_rows(source, split=config.dataset_split, config_name=config.dataset_config, lazy=True)
        if config.max_train_samples is not None:
            raw = type(raw)(
                raw.rows[: config.max_train_samples], raw.source, f"{raw.fingerprint}:{config.max_train_samples}"
            )
        train, train_report = prepare_dataset(raw, tokenizer, options)
        eval_data = eval_report = None
        if config.eval_dataset is not None or config.eval_split is not None:
            eval_source = config.eval_dataset if config.eval_dataset is not None else source
            eval_raw = read_rows(eval_source, split=config.eval_split, config_name=config.dataset_config)
            if config.max_eval_samples is not None:
                eval_raw = type(eval_raw)(
                    eval_raw.rows[: config.max_eval_samples],
                    eval_raw.source,
                    f"{eval_raw.fingerprint}:{config.max_eval_samples}",
                )
            eval_data, eval_report = prepare_dataset(eval_raw, tokenizer, options)
        elif config.eval_size:
            train, train_report, eval_data, eval_report = hold_out(
                train, train_report, config.eval_size, config.training.get("data_seed") or 0, config.max_eval_samples
            )
        logger.info("Training data: %s", train_report.summary())
        if eval_report is not None:
            logger.info("Evaluation data: %s", eval_report.summary())
        self.data = PreparedData(train, train_report, eval_data, eval_report)
        return self.data

    # -- model -----------------------------------------------------------------------------------------------------

    def load_tokenizer(self):
        """The base model's tokenizer, set up for training (``<unk>`` padding on the right)."""
        if self.tokenizer is None:
            source = self.config.model if self._model_object is None else self._model_object.name_or_path
            self.tokenizer = load_tokenizer(source, self.config.model_revision, for_training=True)
        return self.tokenizer

    def load_model(self):
        """The base model, checked to be Phi-3 and to contain every LoRA target module."""
        config = self.config
        model = load_base_model(
            self._model_object if self._model_object is not None else config.model,
            revision=config.model_revision,
            dtype=config.dtype,
            attn_implementation=config.attn_implementation,
            quantization=config.quantization,
            hardware=self.hardware,
        )
        check_target_modules(model, config.lora["target_modules"])
        if is_loralib(config.lora):  # loralib backend: swap in loralib layers now; the trainer gets no peft_config
            patch_phi3(model, LoralibSpec.from_dict(config.lora), seed=config.training.get("seed"))
        if config.quantization:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=bool(config.training.get("activation_checkpointing")),
                gradient_checkpointing_kwargs=config.training.get("activation_checkpointing_kwargs"),
            )
        return model

    # -- training --------------------------------------------------------------------------------------------------

    def check_launch(self):
        """Check how this process was launched (``accelerate launch`` config, ``torchrun``) against the recipe.

        Raises ``ConfigError`` when the launch cannot produce a usable adapter (e.g. FSDP saving sharded state
        dicts); returns the :class:`~phi3_lora_hub.distributed.launch_plan.LaunchPlan`. ``build_trainer`` runs it too.
        """
        return prepare_launch(self.config, dict(self.config.training))

    def build_trainer(self, model=None, tokenizer=None, data: PreparedData | None = None):
        """A ready ``trl.SFTTrainer`` with the LoRA config, the prepared data and the recipe's callbacks."""
        from trl import SFTConfig

        config = self.config
        check_quantization(config.quantization, self.hardware)  # QLoRA's GPU and bitsandbytes, before anything loads
        self._check_splits()
        training = dict(config.training)
        prepare_launch(config, training)  # a launch that cannot work fails here, before data and model are loaded
        quiet_library_progress_bars()  # no carriage-return clutter when the output is a file or a pipe
        tokenizer = tokenizer or self.load_tokenizer()
        data = data or self.data or self.prepare_data(tokenizer)
        if data.eval is not None and training.get("eval_strategy", "no") == "no":
            # Evaluate at every save. Recorded in the config too, so the YAML saved with each checkpoint and the
            # model card show the settings the run really used.
            training["eval_strategy"] = training.get("save_strategy", "steps")
            training.setdefault("eval_steps", training.get("save_steps"))
            config.training.update({key: training[key] for key in ("eval_strategy", "eval_steps")})
        # Arguments before the model: under DeepSpeed ZeRO-3 they hold the config that makes from_pretrained load
        # only this process's shard of the weights (transformers' is_deepspeed_zero3_enabled).
        args = SFTConfig(output_dir=config.output_dir, **trainer_arguments(training))
        if is_main_process():
            logger.info(global_batch_summary(training, args.world_size))
        model = model if model is not None else self.load_model()
        # Sample answers and run files are written into each checkpoint first: its model card shows them, and any
        # user (or upload) callback sees the checkpoint complete.
        max_length = training.get("max_length")
        self.samples_callback = sample_callback(config.evaluation, data.train, data.eval, tokenizer, max_length)
        callbacks = [
            *filter(None, [self.samples_callback]),
            self._files_callback(),
            self._card_callback(),
            *self.callbacks,
        ]
        if self.hub_callback is not None and self.hub_callback not in callbacks:
            callbacks.append(self.hub_callback)  # last: it pushes what the other callbacks wrote into checkpoints
        if is_loralib(config.lora):
            trainer_class, lora_kwargs = LoralibSFTTrainer, self._loralib_trainer_kwargs()
        else:
            lora_config = build_lora_config(config.lora, base_model_name_or_path=config.model)
            trainer_class, lora_kwargs = Phi3SFTTrainer, {"peft_config": lora_config}
        self.trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            processing_class=tokenizer,
            callbacks=callbacks,
            **lora_kwargs,
        )
        install_progress(self.trainer)  # readable log lines instead of the Trainer's raw dicts
        return self.trainer

    def _loralib_trainer_kwargs(self) -> dict[str, Any]:
        return {
            "loralib_spec": LoralibSpec.from_dict(self.config.lora),
            "base_model_name_or_path": self.config.model,
            "base_model_revision": self.config.model_revision,
        }

    def train(self, *, resume_from_checkpoint: bool | str | None = None, resume_from_hub: bool = False) -> TrainResult:
        """Train the adapter and save it to ``<output_dir>/adapter``; returns a :class:`TrainResult`.

        ``resume_from_checkpoint=True`` continues from the newest complete local checkpoint (or pass its path).
        Ctrl-C raises :class:`~phi3_lora_hub.training.interrupt.TrainingInterrupted` (a ``KeyboardInterrupt``)
        naming the step reached and the newest complete checkpoint.
        With ``hub_model_id``, every checkpoint and then the final adapter are pushed while training runs
        (``TrainResult.hub`` says what reached the Hub); ``resume_from_hub=True`` continues a killed run from the
        newest complete checkpoint it pushed (``hub_push_resumable_state=True``), or from step 0 if there is none.

        Under a launcher every process trains, evaluates the loss and saves together; the adapter files, the
        evaluation report and the Hub pushes come from the main process, which alone has anything left to do then.
        """

        check_quantization(self.config.quantization, self.hardware)  # before the Hub, the tokenizer and the data
        if self.config.hub_card_template is not None:  # found wrong now, not when the first card is written
            check_template(self.config.hub_card_template)
        check_resume_request(self.hub_callback, resume_from_checkpoint, resume_from_hub)
        # publishing checks the Hub token before anything is loaded; Ctrl-C becomes TrainingInterrupted, which says
        # which checkpoint is complete.
        with publishing(self.hub_callback) as hub, reporting_interrupts(self.config.output_dir, lambda: self.trainer):
            trainer = self.trainer or self.build_trainer()
            resume = resume_point(
                self.config.output_dir, self.hub_callback, resume_from_checkpoint, resume_from_hub, trainer.args
            )
            output = trainer.train(resume_from_checkpoint=resume)
            metrics = dict(output.metrics)
            has_eval = self.data is not None and self.data.eval is not None
            if has_eval:
                metrics.update(self._trainer_eval_metrics())
            adapter_dir = self.save(Path(self.config.output_dir) / ADAPTER_SUBDIR, card=False)
            if has_eval and self.config.evaluation["on_train_end"]:
                evaluate_after_training(self)  # writes <adapter_dir>/eval_results.json, the numbers of the model card
            if trainer.args.should_save:
                self.write_card(adapter_dir)  # after the evaluation, so the card shows it
            hub.push_final(adapter_dir, trainer.state.global_step)
        checkpoints = sorted(
            Path(self.config.output_dir).glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[-1])
        )
        return TrainResult(
            adapter_dir=adapter_dir,
            output_dir=Path(self.config.output_dir),
            metrics=metrics,
            global_step=trainer.state.global_step,
            checkpoints=checkpoints,
            train_data=self.data.train_report,
            eval_data=self.data.eval_report,
            log_history=list(trainer.state.log_history),
            hub=hub.report,
        )

    def _trainer_eval_metrics(self) -> dict[str, float]:
        """The Trainer's loss and perplexity on the evaluation data (assistant tokens only, as trained).

        Taken from the evaluation of the last step when training ran one (it evaluates at every save) and kept its
        weights, else run now.
        """
        state = self.trainer.state
        last = next((entry for entry in reversed(state.log_history) if "eval_loss" in entry), None)
        if last is not None and last.get("step") == state.global_step and not self.trainer.args.load_best_model_at_end:
            metrics = {key: value for key, value in last.items() if key.startswith("eval_")}
        else:
            metrics = self.trainer.evaluate()
        metrics["eval_perplexity"] = perplexity_from_nll(metrics["eval_loss"])
        return metrics

    def evaluate(
        self,
        adapter: str | Path | None = None,
        *,
        dataset: Any = None,
        split: str | None = None,
        output: str | Path | None = None,
        progress: bool = True,
        **settings: Any,
    ):
        """Evaluate the base model and the adapter on held-out data; write and return the evaluation report.

        The adapter is ``adapter`` (a directory or ``namespace/name[@revision]``), else the one trained in this
        session, else the one saved in ``<output_dir>/adapter``; with none, the base model alone is evaluated.
        The data is ``dataset`` (any source and format the recipe trains on, ``split`` choosing a split), else the
        recipe's evaluation data. ``settings`` override ``evaluation`` settings for this call (``max_examples``,
        ``max_new_tokens``, ``include_base``, ``metrics``, ...). The report goes to ``output``, else
        ``eval_results.json`` in the adapter directory (or ``output_dir``); see
        :class:`~phi3_lora_hub.evaluation.report.EvaluationReport`.
        """
        return evaluate_recipe(
            self, adapter, dataset=dataset, split=split, output=output, progress=progress, **settings
        )

    # -- saving and using the adapter ------------------------------------------------------------------------------

    def _files_callback(self) -> CheckpointFilesCallback:
        """The :class:`~phi3_lora_hub.callbacks.checkpoint_files.CheckpointFilesCallback` with this recipe's values:
        its YAML, Phi-3's generation config, and the data report once the data is prepared."""

        reports = None
        if self.data is not None:
            reports = {"train": asdict(self.data.train_report)}
            if self.data.eval_report is not None:
                reports["eval"] = asdict(self.data.eval_report)
        return CheckpointFilesCallback(
            recipe_yaml=self.to_yaml(),
            generation_config=phi3_generation_config(self.load_tokenizer()),
            data_report=reports,
        )

    def _card_callback(self) -> ModelCardCallback:
        """The :class:`~phi3_lora_hub.callbacks.model_card.ModelCardCallback` with this recipe's card settings."""
        config = self.config
        return ModelCardCallback(
            config.hub_model_id, template=config.hub_card_template, license=config.hub_card_license
        )

    def write_artifacts(self, directory: str | Path) -> None:
        """Write the files that travel with every adapter: recipe YAML, generation config, data report."""
        self._files_callback().write(directory)

    def save(self, directory: str | Path, *, card: bool = True) -> Path:
        """Save the trained adapter (safetensors), tokenizer, generation config and recipe YAML to ``directory``.

        A loralib run saves its ``lora_state_dict`` and the converted PEFT adapter, so the directory loads like any.
        ``card=False`` leaves out the model card, for a caller that writes it later (``train()``, after evaluating).
        """
        if self.trainer is None:
            raise ConfigError("Nothing to save yet: call train() first.")
        directory = Path(directory)
        if is_loralib(self.config.lora):  # loralib state dict + the equivalent PEFT adapter, side by side
            if self.trainer.args.should_save:
                self.trainer.save_adapter(directory)
        else:
            save_trained_adapter(self.trainer, directory)  # gathers sharded weights: every process calls it
        if not self.trainer.args.should_save:  # the other processes of a multi-process run write nothing
            return directory
        tokenizer = self.load_tokenizer()
        tokenizer.save_pretrained(directory)
        self.write_artifacts(directory)
        if self.samples_callback is not None:
            self.samples_callback.write_final(directory, self.trainer.model, tokenizer, self.trainer.state)
        (directory / "trainer_log.json").write_text(json.dumps(self.trainer.state.log_history, indent=2))
        if card:
            self.write_card(directory)
        return directory

    def write_card(self, directory: str | Path) -> None:
        """Write the model card (``README.md`` and ``loss_curve.png``) of the adapter or checkpoint in ``directory``.

        It replaces PEFT's blank template. The card loads the adapter from ``hub_model_id`` when set, else from
        ``directory``; each push to the Hub renders a card of its own for where it goes.
        """
        self._card_callback().write(directory)

    def adapter_dir(self) -> Path:
        return Path(self.config.output_dir) / ADAPTER_SUBDIR

    def merge_and_save(self, directory: str | Path, adapter: str | Path | None = None) -> Path:
        """Merge the adapter into a fresh copy of the base model and save a plain ``transformers`` checkpoint."""
        return merge_adapter(
            self.config.model, adapter or self.adapter_dir(), directory, revision=self.config.model_revision
        )

    def chat(
        self, messages: list[dict[str, str]], generation_config: GenerationConfig | None = None, **settings: Any
    ) -> str:
        """Answer ``messages`` with the trained adapter; stops on Phi-3's end-of-turn tokens.

        Decoding follows ``generation_config``, else the ``settings`` of
        :func:`~phi3_lora_hub.decoding.chat_generation_config` (``temperature``, ``top_p``, ``max_new_tokens``,
        ``repetition_penalty``, ``seed``; greedy by default).
        """

        if self.trainer is not None:
            model, tokenizer = self.trainer.model, self.load_tokenizer()
        else:
            model, tokenizer = load_for_inference(
                self.config.model, self.adapter_dir(), revision=self.config.model_revision
            )
        config = generation_config or chat_generation_config(**settings)
        return generate_replies(model, tokenizer, [messages], config)[0].text

    def __repr__(self) -> str:
        config = self.config
        return f"Phi3LoraRecipe(model={config.model!r}, dataset={config.dataset!r}, output_dir={config.output_dir!r})"


def load_recipe_settings(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The settings a YAML file (plus ``key=value`` overrides) would pass to :class:`Phi3LoraRecipe`."""
    settings = read_yaml_settings(path)
    for assignment in overrides or []:
        apply_override(settings, assignment)
    return settings
