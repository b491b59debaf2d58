"""Evaluation as the recipe uses it: ``recipe.evaluate()`` and the sample-generations callback it installs.

Kept out of ``recipe.py`` so the recipe only delegates; everything here works from the recipe's resolved
``evaluation`` settings (:mod:`phi3_lora_hub.evaluation.settings`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from datasets import Dataset
from transformers import GenerationConfig, PreTrainedTokenizerBase, Trainer

from phi3_lora_hub.callbacks.sample_generations import SampleGenerationsCallback
from phi3_lora_hub.config.recipe_config import RecipeConfig
from phi3_lora_hub.data.prepare import DataOptions, PreparedData
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.distributed.processes import is_main_process, weights_are_sharded
from phi3_lora_hub.errors import ConfigError, DataError
from phi3_lora_hub.evaluation.data import (
    EvalExample,
    conversations_from_token_ids,
    examples_from_conversations,
    load_examples,
)
from phi3_lora_hub.evaluation.report import ADAPTER_LABEL, BASE_LABEL, EvaluationReport
from phi3_lora_hub.evaluation.runner import EvalSettings, build_report, evaluate_adapter, evaluate_variants
from phi3_lora_hub.evaluation.samples import SamplePrompt
from phi3_lora_hub.evaluation.settings import eval_settings, resolve_evaluation, sample_prompt_messages
from phi3_lora_hub.hub.files import RECIPE_FILE
from phi3_lora_hub.run_file_names import EVAL_REPORT_FILE

logger = logging.getLogger(__name__)


class TrainableRecipe(Protocol):
    """What evaluation reads from a :class:`~phi3_lora_hub.recipe.Phi3LoraRecipe`.

    A protocol, so this module (which the recipe calls) does not import the recipe back.
    """

    config: RecipeConfig
    trainer: Trainer | None
    data: PreparedData | None

    def load_tokenizer(self) -> PreTrainedTokenizerBase: ...

    def prepare_data(self, tokenizer: PreTrainedTokenizerBase | None = None) -> PreparedData: ...

    def data_options(self) -> DataOptions: ...

    def adapter_dir(self) -> Path: ...

    def evaluate(self) -> EvaluationReport: ...


SAMPLE_SEARCH_FACTOR = 20
"""Sample prompts are looked for among the first ``SAMPLE_SEARCH_FACTOR * num_samples`` prepared rows."""


def _prepared_examples(tokenizer, dataset, limit: int | None) -> list[EvalExample]:
    rows = dataset["input_ids"] if limit is None else dataset.select(range(min(limit, len(dataset))))["input_ids"]
    return examples_from_conversations(conversations_from_token_ids(tokenizer, rows))


def sample_generation_config(section: Mapping[str, Any]) -> GenerationConfig:
    """How the sample answers of an ``evaluation`` section are decoded (its ``sample_max_new_tokens``)."""
    return chat_generation_config(
        temperature=float(section["temperature"]),
        top_p=float(section["top_p"]),
        max_new_tokens=int(section["sample_max_new_tokens"]),
        repetition_penalty=float(section["repetition_penalty"]),
        seed=section["seed"],
    )


def sample_callback(
    section: Mapping[str, Any], train: Dataset, eval_data: Dataset | None, tokenizer, max_length: int | None
) -> SampleGenerationsCallback | None:
    """The callback answering the sample prompts of the ``evaluation`` section during training, or ``None`` when
    ``num_samples`` is 0.

    Prompts: every one of ``evaluation.sample_prompts`` when given, else the first ``num_samples`` conversations of
    the prepared ``eval_data``, else of ``train`` (each cut before its last answer, which becomes the reference),
    among the first ``SAMPLE_SEARCH_FACTOR * num_samples`` rows that still hold a complete answer within
    ``max_length``. When none does, the callback carries a note saying why, and training goes on without samples.
    """
    count = section["num_samples"]
    if count == 0:
        return None
    user = sample_prompt_messages(section)
    note = None
    if user is not None:
        prompts, source = [SamplePrompt(messages) for messages in user], "user"
    else:
        dataset, source = (eval_data, "eval split") if eval_data is not None else (train, "train split")
        searched = min(len(dataset), SAMPLE_SEARCH_FACTOR * count)
        examples = _prepared_examples(tokenizer, dataset, searched)[:count]
        prompts = [SamplePrompt(e.prompt, e.reference) for e in examples]
        if not prompts:
            note = (
                f"none of the first {searched} conversations of the {source} has a complete assistant answer within "
                f"max_length={max_length} tokens; raise training.max_length or give evaluation.sample_prompts"
            )
    config = sample_generation_config(section)
    return SampleGenerationsCallback(prompts, config, source=source, seed=section["seed"], note=note)


def _evaluate_trained(
    recipe: TrainableRecipe,
    examples: list[EvalExample],
    settings: EvalSettings,
    include_base: bool,
    source: str,
    dataset_split: str | None,
) -> EvaluationReport:
    """Evaluate the adapter trained in this session, in memory, and the base (the same model, adapter disabled)."""
    config = recipe.config
    model = recipe.trainer.model
    adapter_name = model.active_adapter
    saved = (recipe.adapter_dir() / "adapter_config.json").is_file()
    variants: dict[str, str | None] = {BASE_LABEL: None} if include_base else {}
    variants[ADAPTER_LABEL] = adapter_name
    results = evaluate_variants(model, recipe.load_tokenizer(), examples, variants, settings)
    return build_report(
        results,
        examples,
        settings,
        base_model=config.model,
        base_revision=config.model_revision,
        adapter=str(recipe.adapter_dir()) if saved else f"in-memory adapter ({config.output_dir})",
        adapter_revision=None,
        dataset=source,
        dataset_split=dataset_split,
    )


def evaluate_recipe(
    recipe: TrainableRecipe,
    adapter: str | Path | None = None,
    *,
    dataset: Any = None,
    split: str | None = None,
    output: str | Path | None = None,
    progress: bool = True,
    **overrides: Any,
) -> EvaluationReport:
    """Evaluate base and adapter on held-out data and write the report; see ``Phi3LoraRecipe.evaluate``."""
    config = recipe.config
    section = resolve_evaluation({**config.evaluation, **overrides})
    settings = eval_settings(section, progress=progress, max_length=config.training.get("max_length"))
    tokenizer = recipe.load_tokenizer()
    limit = section["max_examples"]
    if dataset is not None:
        examples, source = load_examples(
            dataset, split=split, config_name=config.dataset_config, options=recipe.data_options(), max_examples=limit
        )
        dataset_split = split
    else:
        data = recipe.data or recipe.prepare_data(tokenizer)
        if data.eval is None or data.eval_report is None:
            raise ConfigError(
                "No evaluation data: set eval_split=, eval_dataset= or eval_size= on the recipe, or pass dataset=."
            )
        examples, source = _prepared_examples(tokenizer, data.eval, limit), data.eval_report.source
        dataset_split = config.eval_split
        if not examples:
            raise DataError(
                f"{source}: no evaluation conversation has a complete assistant answer within "
                f"max_length={config.training.get('max_length')} tokens (truncation cut every one before its first "
                "answer ended), so there is nothing to compare generations with. Raise training.max_length, or "
                "pass dataset= with shorter conversations."
            )

    # In memory when this session trained a PEFT adapter; otherwise (loralib backend, a fresh recipe) from disk.
    if adapter is None and recipe.trainer is not None and hasattr(recipe.trainer.model, "peft_config"):
        report = _evaluate_trained(recipe, examples, settings, section["include_base"], source, dataset_split)
        saved = (recipe.adapter_dir() / "adapter_config.json").is_file()
        adapter_dir = recipe.adapter_dir() if saved else None
    else:
        if adapter is None and (recipe.adapter_dir() / "adapter_config.json").is_file():
            adapter = recipe.adapter_dir()
        if adapter is None:
            logger.info("No trained adapter found in %s: evaluating the base model only.", recipe.adapter_dir())
        report = evaluate_adapter(
            None if adapter is None else str(adapter),
            examples,
            settings,
            dataset=source,
            dataset_split=dataset_split,
            base_model=config.model,
            base_revision=config.model_revision,
            include_base=section["include_base"],
        )
        local = report.adapter is not None and Path(report.adapter).is_dir()
        adapter_dir = Path(report.adapter) if local else None
    target = Path(output) if output is not None else (adapter_dir or Path(config.output_dir)) / EVAL_REPORT_FILE
    path = report.write(target)
    logger.info("Evaluation report written to %s\n%s", path, report.markdown_table())
    return report


def evaluate_after_training(recipe: TrainableRecipe) -> EvaluationReport | None:
    """The evaluation ``train()`` runs at its end, on the main process only; ``None`` where it does not run.

    Generating needs the whole model in one process. With replicated weights (one process, DDP, ZeRO-2) the main
    process evaluates the adapter in memory while the others are done. With sharded weights (FSDP, ZeRO-3) a forward
    pass on one process would wait forever for the others, so it is skipped with a warning saying how to evaluate
    the saved adapter instead; the Trainer's gathered ``eval_loss`` is still in the metrics.
    """
    if not is_main_process():
        return None
    if weights_are_sharded(recipe.trainer.args if recipe.trainer is not None else None):
        logger.warning(
            "The evaluation after training is skipped: the weights are sharded across processes (FSDP or ZeRO-3) "
            "and generating needs the whole model in one process. Evaluate the saved adapter in one process "
            "afterwards: Phi3LoraRecipe.from_yaml('%s').evaluate(), or phi3-lora-hub eval --adapter %s --dataset ...",
            recipe.adapter_dir() / RECIPE_FILE,
            recipe.adapter_dir(),
        )
        return None
    try:
        return recipe.evaluate()
    except DataError as error:  # the evaluation is an extra: the adapter and the Trainer's eval_loss stand
        logger.warning("The evaluation after training is skipped: %s", error)
        return None
