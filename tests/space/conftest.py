"""Fixtures of the Space tests: the tiny base, two tiny adapters trained to differ, and their Hub repos.

The adapters (trained once per session, about 20 s on one CPU thread):

- ``compass``: the sample data's style ("... Safe travels!"), 20 steps with a checkpoint every 4; pushed as
  ``tester/space-compass`` with ``main`` (final) and branches ``step-4``, ``step-12`` (early checkpoints answer
  differently from the final one);
- ``terse``: 16 steps on answers ending in a sentence the base never writes; it answers differently from both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from phi3_testing import torch_threads
from space_testing import AdapterRepo, hub_reachable, make_settings, push_adapter


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and other test processes share the cores."""
    with torch_threads(1):
        yield


@dataclass(frozen=True)
class TrainedAdapters:
    compass_run: Path
    terse: Path

    @property
    def compass(self) -> Path:
        return self.compass_run / "adapter"

    def checkpoint(self, step: int) -> Path:
        return self.compass_run / f"checkpoint-{step}"


_TRAINING = {"per_device_train_batch_size": 8, "learning_rate": 3e-3, "disable_tqdm": True, "logging_steps": 50}


@pytest.fixture(scope="session")
def trained_adapters(tmp_path_factory, tiny_model_dir) -> TrainedAdapters:
    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.data.sample import sample_conversations

    compass_run = tmp_path_factory.mktemp("space-compass")
    terse_run = tmp_path_factory.mktemp("space-terse")
    rows = sample_conversations(64, seed=3)
    for row in rows:
        for message in row["messages"]:
            if message["role"] == "assistant":
                message["content"] = message["content"].replace("Safe travels!", "Thank you, that is a good question.")
    with torch_threads(1):
        Phi3LoraRecipe(
            str(tiny_model_dir),
            sample_conversations(96),
            output_dir=str(compass_run),
            training={**_TRAINING, "max_steps": 20, "save_steps": 4, "save_total_limit": None},
            evaluation={"num_samples": 0},
        ).train()
        terse = Phi3LoraRecipe(
            str(tiny_model_dir),
            rows,
            output_dir=str(terse_run),
            training={**_TRAINING, "max_steps": 16, "save_steps": 100},
            evaluation={"num_samples": 0},
        ).train()
    return TrainedAdapters(compass_run, terse.adapter_dir)


@dataclass(frozen=True)
class HubAdapters:
    compass: AdapterRepo
    terse: AdapterRepo


@pytest.fixture(scope="session")
def hub_adapters(local_hub, trained_adapters) -> HubAdapters:
    """Both adapters pushed to the session's local Hub (``main`` and checkpoint branches ``step-N``)."""
    with hub_reachable():
        compass = push_adapter(
            "tester/space-compass",
            {
                "main": trained_adapters.compass,
                "step-4": trained_adapters.checkpoint(4),
                "step-12": trained_adapters.checkpoint(12),
            },
        )
        terse = push_adapter("tester/space-terse", {"main": trained_adapters.terse})
    return HubAdapters(compass, terse)


@pytest.fixture
def space_settings(tiny_model_dir, tmp_path):
    """A factory of settings for a Space on the tiny base offering both adapters (see ``make_settings``)."""

    def make(**overrides: str):
        return make_settings(tiny_model_dir, tmp_path / "space-data", **overrides)

    return make
