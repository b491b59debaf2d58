"""Reading what a run left in an adapter or checkpoint directory, tolerating every file being absent.

The card is built from files only, so the same card comes out in the training process, for a staged checkpoint,
and for ``phi3-lora-hub push`` of an adapter made long ago. A file that is missing gives ``None``; a file that is
present but unreadable gives ``None`` too, with a warning, so a damaged report never stops a push.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phi3_lora_hub.evaluation.report import EvaluationReport
from phi3_lora_hub.evaluation.samples import SampleGenerations
from phi3_lora_hub.run_file_names import (
    ADAPTER_CONFIG,
    DATA_REPORT_FILE,
    EVAL_REPORT_FILE,
    GENERATION_CONFIG,
    RECIPE_FILE,
    SAMPLES_FILE,
    TRAINER_LOG,
    TRAINER_STATE,
    TRAINING_ARGS_JSON,
)

logger = logging.getLogger(__name__)


def read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("model card: ignoring %s, which cannot be read: %s", path.name, error)
        return None


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        logger.warning("model card: ignoring %s, which cannot be read: %s", path.name, error)
        return None


def _mapping(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _evaluation_files(directory: Path) -> tuple[Any, Any]:
    """The evaluation report and sample generations of ``directory``, read by the evaluation package itself."""

    found: list[Any] = []
    for name, read in ((EVAL_REPORT_FILE, EvaluationReport.read), (SAMPLES_FILE, SampleGenerations.read)):
        try:
            found.append(read(directory) if (directory / name).is_file() else None)
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("model card: ignoring %s, which cannot be read: %s", name, error)
            found.append(None)
    return found[0], found[1]


@dataclass
class RunFiles:
    """The parsed files of one adapter or checkpoint directory (``None`` for each one that is absent)."""

    directory: Path
    adapter_config: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    data_report: dict[str, Any] | None = None
    generation_config: dict[str, Any] | None = None
    trainer_state: dict[str, Any] | None = None
    training_args: dict[str, Any] | None = None
    evaluation: Any = None
    """The ``EvaluationReport`` of ``eval_results.json`` (base vs adapter metrics, written by ``recipe.evaluate()``)."""
    samples: Any = None
    """The ``SampleGenerations`` of ``sample_generations.json`` (answers per step, written at every checkpoint)."""
    log_history: list[dict[str, Any]] = field(default_factory=list)
    added_tokens: dict[int, str] = field(default_factory=dict)
    """Token id -> text of the tokenizer's added (special) tokens."""

    @classmethod
    def read(cls, directory: str | Path) -> RunFiles:
        directory = Path(directory)
        files = cls(directory=directory)
        files.adapter_config = _mapping(read_json(directory / ADAPTER_CONFIG))
        files.recipe = _mapping(read_yaml(directory / RECIPE_FILE))
        files.data_report = _mapping(read_json(directory / DATA_REPORT_FILE))
        files.generation_config = _mapping(read_json(directory / GENERATION_CONFIG))
        files.trainer_state = _mapping(read_json(directory / TRAINER_STATE))
        files.training_args = _mapping(read_json(directory / TRAINING_ARGS_JSON))
        files.evaluation, files.samples = _evaluation_files(directory)
        if files.trainer_state is not None:
            history = files.trainer_state.get("log_history")
        else:  # the final adapter carries the log history alone
            history = read_json(directory / TRAINER_LOG)
        files.log_history = [entry for entry in history or [] if isinstance(entry, dict)]
        tokenizer = _mapping(read_json(directory / "tokenizer.json")) or {}
        for token in tokenizer.get("added_tokens") or []:
            if isinstance(token, dict) and isinstance(token.get("id"), int):
                files.added_tokens[token["id"]] = str(token.get("content"))
        return files

    @property
    def step(self) -> int | None:
        """The training step these files describe."""
        if self.trainer_state is not None and isinstance(self.trainer_state.get("global_step"), int):
            return self.trainer_state["global_step"]
        steps = [entry["step"] for entry in self.log_history if isinstance(entry.get("step"), int)]
        return max(steps) if steps else None

    @property
    def base_model(self) -> str | None:
        recipe_model = (self.recipe or {}).get("model")
        return recipe_model or (self.adapter_config or {}).get("base_model_name_or_path")
