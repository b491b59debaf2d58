"""The launch this process is part of, read the way accelerate will read it.

``accelerate launch --config_file X`` turns the config into environment variables (``ACCELERATE_USE_FSDP``,
``FSDP_STATE_DICT_TYPE``, ``ACCELERATE_DEEPSPEED_ZERO_STAGE``, ...) that the Trainer's ``Accelerator`` reads when it
is created, long after the base model is loaded. :func:`read_launch_plan` resolves them now, through accelerate's
own plugin classes, so the recipe can check them (:mod:`phi3_lora_hub.distributed.launch`) before anything loads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# DeepSpeed config keys that the Trainer fills from the training arguments when they are "auto" (and refuses to
# start when they hold another value): DeepSpeed key -> the recipe's training setting.
DEEPSPEED_FROM_TRAINING = {
    "train_micro_batch_size_per_gpu": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "gradient_clipping": "max_grad_norm",
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block, then restore the environment exactly as it was."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@dataclass(frozen=True)
class LaunchPlan:
    """The parallelism this process was launched with, as far as the recipe depends on it."""

    strategy: str
    """``single`` (one process), ``ddp`` (replicated weights), ``fsdp`` or ``deepspeed``."""
    processes: int
    """World size (``WORLD_SIZE`` set by the launcher; 1 without one)."""
    gpu: bool
    """Whether CUDA is available. Without it accelerate runs FSDP launches as plain multi-CPU data parallelism."""
    mixed_precision: str = "no"
    """``mixed_precision`` of the accelerate config (``ACCELERATE_MIXED_PRECISION``)."""
    fsdp_version: int | None = None
    fsdp_shards: bool = False
    """False only for FSDP1 ``NO_SHARD`` (weights replicated, like DDP)."""
    fsdp_state_dict_type: str | None = None
    fsdp_activation_checkpointing: bool = False
    zero_stage: int | None = None
    zero3_gathers_16bit_weights: bool | None = None
    """ZeRO-3 only: ``stage3_gather_16bit_weights_on_model_save``, which lets ``save_model`` write the adapter."""
    deepspeed_fixed: Mapping[str, Any] = field(default_factory=dict)
    """DeepSpeed batch settings given as numbers instead of ``"auto"`` (they must equal the recipe's)."""

    @property
    def data_parallel(self) -> bool:
        """True when every process holds the whole model and DDP averages the gradients."""
        return self.processes > 1 and (self.strategy == "ddp" or (self.strategy == "fsdp" and not self.gpu))

    @property
    def shards_weights(self) -> bool:
        """True when no process holds the whole model, so a forward pass on one process alone would hang."""
        if self.strategy == "fsdp":
            return self.fsdp_shards and self.gpu
        return self.strategy == "deepspeed" and self.zero_stage == 3

    def describe(self) -> str:
        """One line for logs and ``--dry-run``: the strategy and the settings that matter to the recipe."""
        if self.strategy == "fsdp":
            detail = f"FSDP{self.fsdp_version} ({self.fsdp_state_dict_type}, sharded={self.fsdp_shards})"
            if not self.gpu:
                detail += " requested; without a GPU accelerate runs it as multi-CPU data parallelism"
        elif self.strategy == "deepspeed":
            detail = f"DeepSpeed ZeRO-{self.zero_stage}"
        elif self.strategy == "ddp":
            detail = "DDP (data parallel)"
        else:
            detail = "single process"
        return f"launch: {self.processes} process(es), {detail}, mixed_precision={self.mixed_precision}"


def read_launch_plan(*, gpu: bool | None = None) -> LaunchPlan:
    """Resolve the launcher's environment with accelerate's own ``FullyShardedDataParallelPlugin`` and
    ``DeepSpeedPlugin`` (neither imports DeepSpeed), so the answer is what the Trainer will do.

    ``gpu`` says whether to resolve as on a CUDA machine (default: whether this one is), e.g. to check a GPU
    cluster's launch settings on a laptop.
    """
    import torch

    processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
    common = {
        "processes": processes,
        "gpu": torch.cuda.is_available() if gpu is None else gpu,
        "mixed_precision": os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower(),
    }
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        from accelerate.utils import DeepSpeedPlugin

        config = DeepSpeedPlugin().deepspeed_config
        zero = config.get("zero_optimization", {})
        stage = int(zero.get("stage", 0))
        gathers = bool(zero.get("stage3_gather_16bit_weights_on_model_save", False)) if stage == 3 else None
        keys = (*DEEPSPEED_FROM_TRAINING, "train_batch_size")
        fixed = {key: config[key] for key in keys if config.get(key, "auto") != "auto"}
        return LaunchPlan(
            "deepspeed", zero_stage=stage, zero3_gathers_16bit_weights=gathers, deepspeed_fixed=fixed, **common
        )
    if _flag("ACCELERATE_USE_FSDP"):
        from accelerate.utils import FullyShardedDataParallelPlugin
        from torch.distributed.fsdp import ShardingStrategy

        # Loading settings do not change what is read here, and with sync_module_states the plugin wants a GPU
        # to exist; the environment is restored afterwards (the plugin writes to it).
        loading = {"FSDP_SYNC_MODULE_STATES": "false", "FSDP_CPU_RAM_EFFICIENT_LOADING": "false"}
        with _environment(loading):
            plugin = FullyShardedDataParallelPlugin()
        version = int(plugin.fsdp_version)
        strategy = plugin.sharding_strategy if plugin.sharding_strategy is not None else plugin.reshard_after_forward
        shards = version == 2 or strategy != ShardingStrategy.NO_SHARD
        return LaunchPlan(
            "fsdp",
            fsdp_version=version,
            fsdp_shards=shards,
            fsdp_state_dict_type=plugin.state_dict_type.name,
            fsdp_activation_checkpointing=bool(plugin.activation_checkpointing),
            **common,
        )
    return LaunchPlan("ddp" if processes > 1 else "single", **common)
