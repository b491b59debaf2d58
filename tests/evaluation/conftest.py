"""Tiny adapters trained once per session for the evaluation tests.

Torch runs single-threaded here: the tiny model's operations are far too small to gain from a second thread,
and on a shared 2-core machine intra-op threads contending with other processes make training and generation
several times slower.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from phi3_testing import torch_threads


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


TRAINING = {
    "max_steps": 30,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 3e-3,
    "save_steps": 15,
    "logging_steps": 5,
    "disable_tqdm": True,
}
# Small enough to keep the suite fast; large enough to exercise batching (8 examples, batch size 4).
EVALUATION = {
    "max_examples": 8,
    "batch_size": 4,
    "max_new_tokens": 24,
    "report_samples": 2,
    "num_samples": 2,
    "sample_max_new_tokens": 16,
}


@dataclass
class TrainedRun:
    recipe: object
    result: object
    output_dir: Path

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / "adapter"


@pytest.fixture(scope="session")
def heldout_file(tmp_path_factory) -> Path:
    """Compass-style conversations the adapters never saw (another seed), as a JSONL file."""
    from phi3_lora_hub.data.sample import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("data") / "heldout.jsonl", n=12, seed=99)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model_dir) -> TrainedRun:
    """An adapter trained on the Compass sample data with held-out eval data: checkpoints at 15 and 30."""
    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.data.sample import sample_conversations

    output_dir = tmp_path_factory.mktemp("run-a")
    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(160),
        eval_size=16,
        output_dir=str(output_dir),
        training=TRAINING,
        evaluation=EVALUATION,
    )
    with torch_threads(1):
        return TrainedRun(recipe, recipe.train(), output_dir)


@pytest.fixture(scope="session")
def second_adapter(tmp_path_factory, tiny_model_dir) -> Path:
    """A different adapter: a few steps on terse answers (the base's own style), so it stays close to the base."""
    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.data.sample import plain_conversations

    output_dir = tmp_path_factory.mktemp("run-b")
    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        plain_conversations(64),
        output_dir=str(output_dir),
        training={**TRAINING, "max_steps": 8, "learning_rate": 1e-3, "save_steps": 100},
        evaluation={"num_samples": 0},
    )
    with torch_threads(1):
        return recipe.train().adapter_dir
