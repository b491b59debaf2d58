"""Helpers of the adversarial Space tests: adapters that answer distinguishably without training, and a visitor.

Imported as ``from adv_space_testing import ...`` (this folder is put on ``sys.path`` by pytest, as every test
folder without ``__init__.py``). Fixtures are in ``conftest.py`` (block ``adv_space_``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from space_testing import answers

ADAPTER_PATTERNS = ["adapter_config.json", "adapter_model.safetensors"]
SEND_DEFAULTS: dict[str, Any] = {"system": "", "temperature": 0, "top_p": 1, "max_new_tokens": 16, "seed": 0}


@dataclass(frozen=True)
class Contender:
    """One model a pane may show: the base (``repo == "base"``) or an adapter repo at a revision."""

    name: str
    repo: str
    revision: str | None
    commit: str | None
    folder: Path | None

    @property
    def pick(self) -> tuple[str, str | None]:
        """The (repo, revision) a visitor sends for this pane."""
        return self.repo, self.revision


def random_adapter(base_dir: Path, folder: Path, seed: int, rank: int = 4) -> Path:
    """A LoRA adapter for ``base_dir`` with random (non-zero) A and B matrices, saved as safetensors.

    Different seeds give adapters whose greedy answers differ from the base's and from each other: enough to tell
    which adapter produced an answer, without training.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["qkv_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    return folder


def send(client, prompt: str, first: Contender, second: Contender, **settings: Any):
    """``/send`` through ``client``; returns the final outputs (the generator's last value)."""
    values = {**SEND_DEFAULTS, "blind": False, **settings}
    return client.predict(prompt, *first.pick, *second.pick, *values.values(), api_name="/send")


def pane_answers(outputs) -> tuple[list[str], list[str]]:
    """The assistant answers of both panes of ``/send`` outputs."""
    return answers(outputs[0]), answers(outputs[1])
