"""The metrics shipped with phi3-lora-hub as ``evaluate`` modules, loadable with the network off.

Each metric lives in ``metrics/<name>/<name>.py``, the layout ``evaluate.load(<directory>)`` reads locally, so
nothing is fetched from the Hub (``evaluate``'s own wheel ships no metric scripts). The scripts hold only the
``evaluate`` wrapper; the computations are in :mod:`phi3_lora_hub.evaluation.scoring` and
:mod:`phi3_lora_hub.evaluation.perplexity`. Two ``evaluate`` rules they follow: one import per line, and no
relative imports (``evaluate`` would try to download those).

    from phi3_lora_hub.evaluation.metrics import combine_metrics, load_metric

    load_metric("chrf").compute(predictions=answers, references=references)
    combine_metrics().compute(predictions=raw_generations, references=references)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ConfigError, unknown_key_error

METRICS: tuple[str, ...] = (
    "perplexity",
    "rouge_l",
    "chrf",
    "bleu",
    "exact_match",
    "answer_length",
    "stop_rate",
)
"""Every shipped metric, by the name of its directory."""
GENERATION_METRICS: tuple[str, ...] = tuple(name for name in METRICS if name != "perplexity")
"""The metrics computed from generated answers (``predictions``, plus ``references`` where needed)."""

_ROOT = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """The directory of the shipped metric ``name``, as ``evaluate.load`` takes it."""
    if name not in METRICS:
        raise unknown_key_error("metric", name, METRICS)
    path = _ROOT / name
    if not (path / f"{name}.py").is_file():
        raise ConfigError(f"The metric script {path / name}.py is missing: reinstall phi3-lora-hub.")
    return str(path)


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` of a shipped metric, kept in memory (no cache files, no locks); never downloads."""
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(metric_path(name), **kwargs)


def combine_metrics(names: tuple[str, ...] | list[str] = GENERATION_METRICS, **kwargs: Any):
    """``evaluate.combine`` of shipped metrics; ``compute`` then passes every keyword to every metric."""
    import evaluate

    return evaluate.combine([load_metric(name, **kwargs) for name in names])
