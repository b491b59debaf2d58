"""The evaluation report: the one source of the numbers shown in a model card.

``eval_results.json`` (:data:`EVAL_REPORT_FILE`) is written next to the adapter it evaluates (``<output_dir>/adapter``
after training, or wherever ``--output`` says) and holds, per evaluated model (``base``, ``adapter``), every
metric, plus the settings, the data and a few sample answers side by side. The card builder reads it with
:meth:`EvaluationReport.read` and uses :meth:`~EvaluationReport.markdown_table` for the results table and
:meth:`~EvaluationReport.eval_results` for the ``model-index`` metadata, so both show the same numbers.

JSON layout (``format_version`` 1)::

    {"format_version": 1, "created_at": "2026-...Z",
     "base_model": "microsoft/Phi-3-mini-4k-instruct", "base_revision": null,
     "adapter": "phi3-lora-output/adapter", "adapter_revision": null,
     "dataset": "eval.jsonl", "dataset_split": null, "num_examples": 100,
     "gen_params": {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 128, "repetition_penalty": 1.0, "seed": 0},
     "batch_size": 8, "metrics": ["perplexity", "rouge_l", ...],
     "results": {"base": {"perplexity": 9.1, "rougeL": 0.31, ...}, "adapter": {...}},
     "samples": [{"prompt": [...], "reference": "...", "answers": {"base": "...", "adapter": "..."},
                  "finish_reasons": {"base": "stop", "adapter": "stop"}}],
     "versions": {"phi3-lora-hub": "0.1.0", "transformers": "...", ...}}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import GenerationConfig

from phi3_lora_hub.decoding import config_from_settings, describe_decoding, settings_of
from phi3_lora_hub.run_file_names import EVAL_REPORT_FILE

REPORT_FORMAT_VERSION = 1
BASE_LABEL = "base"
ADAPTER_LABEL = "adapter"


@dataclass(frozen=True)
class MetricSpec:
    """How a reported number is named and read."""

    title: str
    higher_is_better: bool | None
    """``None`` for descriptive numbers (answer length) that are neither good nor bad."""
    scale: str


# Reported numbers, in table order; `results` may hold a subset (only the metrics that were computed).
METRIC_SPECS: dict[str, MetricSpec] = {
    "perplexity": MetricSpec("Perplexity (answer tokens)", False, "≥ 1"),
    "rougeL": MetricSpec("ROUGE-L F1", True, "0–1"),
    "chrf": MetricSpec("chrF", True, "0–100"),
    "bleu": MetricSpec("BLEU", True, "0–100"),
    "exact_match": MetricSpec("Exact match", True, "0–1"),
    "stop_rate": MetricSpec("Stop rate", True, "0–1"),
    "mean_answer_words": MetricSpec("Mean answer length (words)", None, "words"),
    "mean_answer_tokens": MetricSpec("Mean answer length (tokens)", None, "tokens"),
}


@dataclass
class SampleAnswer:
    """One prompt with the reference answer and each evaluated model's answer."""

    prompt: list[dict[str, str]]
    reference: str | None
    answers: dict[str, str]
    finish_reasons: dict[str, str] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the numbers."""
    from importlib import metadata

    versions = {}
    for name in ("phi3-lora-hub", "torch", "transformers", "peft", "evaluate", "rouge_score", "sacrebleu"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class EvaluationReport:
    """Metrics of the base model and/or an adapter on one evaluation set, with the settings that produced them."""

    base_model: str
    adapter: str | None
    """Adapter directory or Hub repo id; ``None`` when only the base model was evaluated."""
    dataset: str
    num_examples: int
    gen_params: GenerationConfig
    results: dict[str, dict[str, float]]
    """Per model label (``base``, ``adapter``), metric name to value."""
    base_revision: str | None = None
    adapter_revision: str | None = None
    dataset_split: str | None = None
    batch_size: int = 8
    metrics: list[str] = field(default_factory=list)
    """The metric modules computed (see :data:`phi3_lora_hub.evaluation.metrics.METRICS`)."""
    samples: list[SampleAnswer] = field(default_factory=list)
    created_at: str = field(default_factory=_now)
    versions: dict[str, str] = field(default_factory=library_versions)
    format_version: int = REPORT_FORMAT_VERSION

    # -- files -----------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gen_params"] = settings_of(self.gen_params)
        data["results"] = {label: {k: _json_number(v) for k, v in m.items()} for label, m in self.results.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        version = data.get("format_version", REPORT_FORMAT_VERSION)
        if version > REPORT_FORMAT_VERSION:
            raise ValueError(f"{EVAL_REPORT_FILE} format_version {version} is newer than this library; upgrade it.")
        fields = dict(data)
        fields["gen_params"] = config_from_settings(fields["gen_params"])
        fields["samples"] = [SampleAnswer(**sample) for sample in fields.get("samples", [])]
        fields["results"] = {
            label: {k: math.inf if v is None else v for k, v in m.items()} for label, m in fields["results"].items()
        }
        return cls(**fields)

    def write(self, path: str | Path) -> Path:
        """Write the report as JSON to ``path``, or to ``path/eval_results.json`` when ``path`` is a directory."""
        path = Path(path)
        if path.is_dir():
            path = path / EVAL_REPORT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> EvaluationReport:
        """Read a report from a JSON file, or from ``eval_results.json`` in a directory."""
        path = Path(path)
        if path.is_dir():
            path = path / EVAL_REPORT_FILE
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    # -- presentation ----------------------------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Evaluated model labels, base first."""
        return sorted(self.results, key=lambda label: (label != BASE_LABEL, label))

    def data_description(self) -> str:
        """What the numbers were measured on: ``"5 conversations of eval.jsonl"``, with the split when it is not in
        the dataset's name already (``"100 conversations of HuggingFaceH4/ultrachat_200k (test_sft)"``)."""
        split = (
            f" ({self.dataset_split})" if self.dataset_split and f"({self.dataset_split})" not in self.dataset else ""
        )
        return f"{self.num_examples} conversations of {self.dataset}{split}"

    def markdown_table(self) -> str:
        """A Markdown table: one row per metric, one column per model, with a change column for base vs adapter."""
        labels = self.labels
        both = BASE_LABEL in self.results and ADAPTER_LABEL in self.results
        header = ["Metric", *labels] + (["Change"] if both else [])
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for key, spec in METRIC_SPECS.items():
            if not any(key in self.results[label] for label in labels):
                continue
            arrow = {True: " ↑", False: " ↓", None: ""}[spec.higher_is_better]
            cells = [f"{spec.title}{arrow}"] + [_format(self.results[label].get(key)) for label in labels]
            if both:
                cells.append(_change(self.results[BASE_LABEL].get(key), self.results[ADAPTER_LABEL].get(key)))
            lines.append("| " + " | ".join(cells) + " |")
        settings = self.gen_params
        decoding = describe_decoding(settings)
        lines.append("")
        lines.append(
            f"{self.data_description()}; {decoding}, max_new_tokens {settings.max_new_tokens}. ROUGE-L, exact match "
            "and stop rate are fractions, chrF and BLEU are sacreBLEU scores (0–100); perplexity counts answer tokens "
            "only."
        )
        return "\n".join(lines)

    def eval_results(self, *, dataset_type: str | None = None, dataset_name: str | None = None) -> list[Any]:
        """``huggingface_hub.EvalResult`` entries for the card's ``model-index`` (the adapter's numbers).

        When only the base model was evaluated, its numbers are used. ``dataset_type`` defaults to the dataset
        description, which is the Hub id for Hub datasets; ``dataset_name`` to :meth:`data_description`.
        """
        from huggingface_hub import EvalResult

        label = ADAPTER_LABEL if ADAPTER_LABEL in self.results else BASE_LABEL
        dataset_id = dataset_type or self.dataset
        entries = []
        for key, spec in METRIC_SPECS.items():
            value = self.results.get(label, {}).get(key)
            if value is None or not math.isfinite(value):
                continue
            entries.append(
                EvalResult(
                    task_type="text-generation",
                    task_name="Chat",
                    dataset_type=dataset_id,
                    dataset_name=dataset_name or self.data_description(),
                    dataset_split=self.dataset_split,
                    metric_type=key,
                    metric_name=spec.title,
                    metric_value=round(float(value), 4),
                )
            )
        return entries


def _json_number(value: float) -> float | None:
    # JSON has no infinity: an overflowing perplexity is written as null and read back as inf.
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _format(value: float | None) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "∞"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def _change(before: float | None, after: float | None) -> str:
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return "–"
    return f"{after - before:+.3f}" if abs(after - before) < 10 else f"{after - before:+.2f}"
