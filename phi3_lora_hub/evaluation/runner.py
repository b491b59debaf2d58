"""Run the shipped metrics for one or more variants of a loaded model (base, adapters) on the same examples.

Every variant gets the same prompts, batches and generation settings. The numbers come from the shipped
``evaluate`` modules, so ``evaluate.load`` users and the report always agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from transformers import GenerationConfig

from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.errors import ConfigError, unknown_key_error
from phi3_lora_hub.evaluation.data import EvalExample
from phi3_lora_hub.evaluation.metrics import GENERATION_METRICS, METRICS, combine_metrics, load_metric
from phi3_lora_hub.evaluation.models import ModelSpec, active_adapter, common_base, load_with_adapters, resolve_adapter
from phi3_lora_hub.evaluation.report import ADAPTER_LABEL, BASE_LABEL, EvaluationReport, SampleAnswer
from phi3_lora_hub.generation import Reply, generate_replies

logger = logging.getLogger(__name__)

# Scalar outputs of the perplexity module that go into the report (its per-conversation list does not).
_PERPLEXITY_KEYS = ("perplexity", "mean_nll", "scored_tokens")


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation runs: generation settings, batch size, which metrics, how many sample answers."""

    gen_params: GenerationConfig = field(default_factory=lambda: chat_generation_config(max_new_tokens=128))
    batch_size: int = 8
    metrics: tuple[str, ...] = METRICS
    num_samples: int = 3
    """Examples whose answers are stored in the report, side by side."""
    max_length: int | None = None
    """Truncate conversations to this many tokens for perplexity (as training does)."""
    progress: bool = True

    def __post_init__(self) -> None:
        for name in self.metrics:
            if name not in METRICS:
                raise unknown_key_error("metric", name, METRICS)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.num_samples < 0:
            raise ConfigError(f"The number of sample answers must be 0 or more, got {self.num_samples}.")


@dataclass
class VariantResult:
    metrics: dict[str, float]
    generations: list[Reply]


def score_variant(
    model, tokenizer, examples: Sequence[EvalExample], adapter: str | None, settings: EvalSettings, label: str
) -> VariantResult:
    """Metrics of ``model`` with ``adapter`` active (``None``: adapters disabled) on ``examples``."""
    metrics: dict[str, float] = {}
    generations: list[Reply] = []
    with active_adapter(model, adapter):
        if "perplexity" in settings.metrics:
            scores = load_metric("perplexity").compute(
                conversations=[example.conversation for example in examples],
                model=model,
                tokenizer=tokenizer,
                batch_size=settings.batch_size,
                max_length=settings.max_length,
                progress=settings.progress,
            )
            metrics.update({key: scores[key] for key in _PERPLEXITY_KEYS})
        wanted = [name for name in settings.metrics if name in GENERATION_METRICS]
        if wanted:
            generations = generate_replies(
                model,
                tokenizer,
                [example.prompt for example in examples],
                settings.gen_params,
                batch_size=settings.batch_size,
                progress=settings.progress,
                description=f"Generating ({label})",
            )
            metrics.update(
                combine_metrics(wanted).compute(
                    predictions=[generation.raw_text for generation in generations],
                    references=[example.reference for example in examples],
                    tokenizer=tokenizer,
                )
            )
    logger.info("%s: %s", label, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return VariantResult(metrics, generations)


def evaluate_variants(
    model,
    tokenizer,
    examples: Sequence[EvalExample],
    variants: Mapping[str, str | None],
    settings: EvalSettings,
) -> dict[str, VariantResult]:
    """Score each variant, label to adapter name (``None`` = base), in order, on the same ``examples``."""
    if not examples:
        raise ValueError("no evaluation examples")
    return {
        label: score_variant(model, tokenizer, examples, adapter, settings, label)
        for label, adapter in variants.items()
    }


def sample_answers(
    examples: Sequence[EvalExample], results: Mapping[str, VariantResult], count: int
) -> list[SampleAnswer]:
    """The first ``count`` examples with every variant's answer (when answers were generated)."""
    samples = []
    for index, example in enumerate(examples[:count]):
        answers = {label: r.generations[index].text for label, r in results.items() if r.generations}
        if not answers:
            break
        reasons = {label: r.generations[index].finish_reason for label, r in results.items() if r.generations}
        samples.append(SampleAnswer(example.prompt, example.reference, answers, reasons))
    return samples


def build_report(
    results: Mapping[str, VariantResult],
    examples: Sequence[EvalExample],
    settings: EvalSettings,
    *,
    base_model: str,
    base_revision: str | None,
    adapter: str | None,
    adapter_revision: str | None,
    dataset: str,
    dataset_split: str | None,
) -> EvaluationReport:
    """Assemble an :class:`EvaluationReport` from :func:`evaluate_variants` output."""
    return EvaluationReport(
        base_model=base_model,
        base_revision=base_revision,
        adapter=adapter,
        adapter_revision=adapter_revision,
        dataset=dataset,
        dataset_split=dataset_split,
        num_examples=len(examples),
        gen_params=settings.gen_params,
        batch_size=settings.batch_size,
        metrics=list(settings.metrics),
        results={label: dict(result.metrics) for label, result in results.items()},
        samples=sample_answers(examples, results, settings.num_samples),
    )


def evaluate_adapter(
    adapter: str | None,
    examples: Sequence[EvalExample],
    settings: EvalSettings,
    *,
    dataset: str,
    dataset_split: str | None = None,
    base_model: str | None = None,
    base_revision: str | None = None,
    include_base: bool = True,
) -> EvaluationReport:
    """Load ``adapter`` (directory or ``namespace/name[@revision]``; ``None`` for the base alone) and evaluate it.

    The base model is ``base_model``, else the one the adapter names in ``adapter_config.json``. With
    ``include_base`` the base model (adapter disabled, same weights in memory) is evaluated too.
    """

    resolved = resolve_adapter(ModelSpec.parse(adapter)) if adapter is not None else None
    if resolved is not None:
        base = common_base([resolved], base_model)
    elif base_model:
        base = base_model
    else:
        raise ConfigError("Nothing to evaluate: give an adapter, or a base model to evaluate on its own.")
    model, tokenizer = load_with_adapters(base, {ADAPTER_LABEL: resolved} if resolved else {}, revision=base_revision)
    variants: dict[str, str | None] = {}
    if include_base or resolved is None:
        variants[BASE_LABEL] = None
    if resolved is not None:
        variants[ADAPTER_LABEL] = ADAPTER_LABEL
    results = evaluate_variants(model, tokenizer, examples, variants, settings)
    return build_report(
        results,
        examples,
        settings,
        base_model=base,
        base_revision=base_revision,
        adapter=resolved.ref.repo if resolved else None,
        adapter_revision=resolved.ref.revision if resolved else None,
        dataset=dataset,
        dataset_split=dataset_split,
    )
