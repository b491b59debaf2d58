"""With sharded weights (FSDP, ZeRO-3) the main process cannot run the model alone: the sample generations and the
evaluation after training are skipped with a warning instead of hanging every process.

Sharding cannot happen on this machine (no GPU), so ``weights_are_sharded`` is replaced here; what it reads from a
real launch is covered by test_scale_launch_configs.py (``LaunchPlan.shards_weights``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerState, TrainingArguments

import phi3_lora_hub.callbacks.sample_generations as sample_generations
import phi3_lora_hub.distributed.processes as distributed
import phi3_lora_hub.training.recipe_evaluation as recipe_evaluation
from phi3_lora_hub.callbacks.sample_generations import SampleGenerationsCallback
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.evaluation.samples import SamplePrompt
from phi3_lora_hub.training.recipe_evaluation import evaluate_after_training


class RecipeStandIn:
    """What ``evaluate_after_training`` uses of a recipe; evaluating counts instead of generating."""

    def __init__(self, tmp_path: Path) -> None:
        self.trainer = SimpleNamespace(args=None)
        self.evaluations = 0
        self._adapter_dir = tmp_path / "adapter"

    def adapter_dir(self) -> Path:
        return self._adapter_dir

    def evaluate(self) -> str:
        self.evaluations += 1
        return "report"


@pytest.fixture
def sharded(monkeypatch):
    for module in (distributed, sample_generations, recipe_evaluation):
        monkeypatch.setattr(module, "weights_are_sharded", lambda args=None: True)


def test_evaluation_after_training_is_skipped_with_sharded_weights(sharded, tmp_path, caplog):
    recipe = RecipeStandIn(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert evaluate_after_training(recipe) is None
    assert recipe.evaluations == 0
    assert str(tmp_path / "adapter" / "phi3_lora_recipe.yaml") in caplog.text  # says how to evaluate it instead


def test_evaluation_after_training_runs_on_the_main_process_only(monkeypatch, tmp_path):
    recipe = RecipeStandIn(tmp_path)
    assert evaluate_after_training(recipe) == "report" and recipe.evaluations == 1
    monkeypatch.setattr(recipe_evaluation, "is_main_process", lambda: False)
    assert evaluate_after_training(recipe) is None and recipe.evaluations == 1


def test_sample_generations_are_off_with_sharded_weights(sharded, untrained_tiny_model, tmp_path, caplog):
    from phi3_lora_hub.model.loading import load_tokenizer

    callback = SampleGenerationsCallback(
        [SamplePrompt([{"role": "user", "content": "Hi"}])], chat_generation_config(), source="user"
    )
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    state = TrainerState(is_world_process_zero=True)
    model = SimpleNamespace(generate=None)  # never used: generating is not attempted
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            callback.on_train_begin(
                args, state, None, model=model, processing_class=load_tokenizer(str(untrained_tiny_model))
            )
    assert callback.samples.steps == []
    assert caplog.text.count("Sample generations are off") == 1
