"""What ``Phi3LoraRecipe.train()`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phi3_lora_hub.data.prepare import DataReport

if TYPE_CHECKING:
    from phi3_lora_hub.hub.report import HubPushReport


@dataclass
class TrainResult:
    """The outcome of a training run: where the adapter is, the numbers, and what reached the Hub."""

    adapter_dir: Path
    """The final adapter (``adapter_model.safetensors``, config, tokenizer, generation config, recipe YAML)."""
    output_dir: Path
    metrics: dict[str, float]
    """Final training metrics (``train_loss``, ``train_runtime``, ...) and, with eval data, ``eval_loss``."""
    global_step: int
    checkpoints: list[Path]
    train_data: DataReport
    eval_data: DataReport | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)
    hub: HubPushReport | None = None
    """The Hub push report when ``hub_model_id`` was set: which checkpoints reached the Hub and which did not."""

    def __str__(self) -> str:
        lines = [f"adapter: {self.adapter_dir}", f"steps: {self.global_step}"]
        lines += [f"{key}: {value:.4g}" for key, value in self.metrics.items() if isinstance(value, float)]
        lines.append(f"train data: {self.train_data.summary()}")
        if self.hub is not None:
            lines.append(f"hub: {self.hub}")
        return "\n".join(lines)
