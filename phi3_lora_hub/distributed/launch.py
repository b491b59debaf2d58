"""What the launcher asked for, read the way accelerate will read it, and checked against the recipe up front.

``accelerate launch --config_file X`` turns the config into environment variables (``ACCELERATE_USE_FSDP``,
``FSDP_STATE_DICT_TYPE``, ``ACCELERATE_DEEPSPEED_ZERO_STAGE``, ...) that the Trainer's ``Accelerator`` reads when it
is created, long after the base model is loaded. :func:`read_launch_plan` resolves them now, through accelerate's
own plugin classes, so :func:`check_launch` can stop a run whose launch settings would break the recipe (an FSDP
checkpoint without adapter weights, a ZeRO-3 save that cannot be gathered) before hours of loading and training,
and :func:`launch_training_overrides` can adapt the few training arguments that depend on the launch.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phi3_lora_hub.errors import ConfigError

if TYPE_CHECKING:
    from phi3_lora_hub.config.recipe_config import RecipeConfig

logger = logging.getLogger(__name__)

EXAMPLES_HINT = "see examples/accelerate/ and examples/README.md"

# DeepSpeed config keys that the Trainer fills from the training arguments when they are "auto" (and refuses to
# start when they hold another value): DeepSpeed key -> the recipe's training setting.
_DEEPSPEED_FROM_TRAINING = {
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
        keys = (*_DEEPSPEED_FROM_TRAINING, "train_batch_size")
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


def check_launch(plan: LaunchPlan, config: RecipeConfig) -> list[str]:
    """Raise ``ConfigError`` when the launch cannot produce a usable adapter with this recipe; return warnings.

    Errors: FSDP saving sharded state dicts (checkpoints without ``adapter_model.safetensors``), ZeRO-3 without
    16-bit weight gathering (same), the loralib backend with sharded weights (its save reads local tensors), and
    QLoRA under ZeRO-3 (the recipe places each 4-bit model with ``device_map``, which ZeRO-3 refuses).
    """
    from phi3_lora_hub.loralib_backend.spec import is_loralib

    if plan.strategy == "fsdp" and plan.fsdp_state_dict_type != "FULL_STATE_DICT":
        raise ConfigError(
            f"The accelerate config saves FSDP checkpoints as {plan.fsdp_state_dict_type}: they hold no "
            "adapter_model.safetensors, so neither the checkpoints (and their Hub pushes) nor the final adapter "
            f"would load. Set `fsdp_state_dict_type: FULL_STATE_DICT` in its fsdp_config ({EXAMPLES_HINT})."
        )
    if plan.strategy == "deepspeed" and plan.zero_stage == 3 and not plan.zero3_gathers_16bit_weights:
        raise ConfigError(
            "DeepSpeed ZeRO-3 is set to save without gathering the weights, so checkpoints hold a DeepSpeed shard "
            "per process instead of adapter_model.safetensors. Set `zero3_save_16bit_model: true` in the accelerate "
            f"config (or stage3_gather_16bit_weights_on_model_save in the DeepSpeed JSON) ({EXAMPLES_HINT})."
        )
    conflicts = _deepspeed_conflicts(plan, config.training)
    if conflicts:
        raise ConfigError(
            "The DeepSpeed config fixes batch settings that differ from the recipe's, and the Trainer refuses to "
            f'start: {"; ".join(conflicts)}. Set them to "auto" (or remove them) so DeepSpeed takes the recipe\'s '
            f"values ({EXAMPLES_HINT})."
        )
    sharded = plan.strategy == "fsdp" or (plan.strategy == "deepspeed" and plan.zero_stage == 3)
    if sharded and is_loralib(config.lora):
        raise ConfigError(
            "lora backend='loralib' saves the adapter from the main process's own tensors, which FSDP and ZeRO-3 "
            "shard across processes. Use the default 'peft' backend, or launch with DDP or ZeRO-2."
        )
    if plan.strategy == "deepspeed" and plan.zero_stage == 3 and config.quantization:
        raise ConfigError(
            "QLoRA (quantization='4bit') cannot run under DeepSpeed ZeRO-3 here: the recipe loads the 4-bit model "
            "onto each process's GPU with a device_map, which ZeRO-3 refuses. Use DDP (examples/accelerate/ddp.yaml"
            "; a 4-bit Phi-3-mini fits one GPU) or FSDP (examples/accelerate/fsdp_qlora.yaml)."
        )
    warnings = []
    if plan.strategy == "fsdp" and not plan.gpu:
        warnings.append(
            "FSDP was requested but there is no GPU: accelerate trains with multi-CPU data parallelism instead "
            "(every process holds the whole model)."
        )
    if plan.strategy == "fsdp" and config.quantization:
        warnings.append(
            "QLoRA with FSDP follows PEFT's FSDP-QLoRA recipe (FSDP1, fsdp_use_orig_params: false, 4-bit storage in "
            "bfloat16); it has not been run by this project's tests. See examples/README.md for its constraints."
        )
    training = config.training
    configured_in_training = [key for key in ("fsdp", "deepspeed") if training.get(key)]
    if configured_in_training:
        warnings.append(
            f"training.{configured_in_training[0]} sets up parallelism inside the training arguments, which the "
            "recipe does not check; launch with an accelerate config instead to have it checked "
            f"({EXAMPLES_HINT})."
        )
    if plan.mixed_precision in ("fp16", "bf16") and not (training.get("bf16") or training.get("fp16")):
        warnings.append(
            f"The accelerate config sets mixed_precision={plan.mixed_precision} but the recipe trains without it "
            "(training.bf16/fp16 are false): the launcher's setting applies. Set mixed_precision: 'no' and let the "
            "recipe choose (bf16 on GPUs that support it)."
        )
    return warnings


def _deepspeed_conflicts(plan: LaunchPlan, training: Mapping[str, Any]) -> list[str]:
    """``"key=value vs recipe setting=value"`` for each fixed DeepSpeed batch setting that disagrees."""
    expected = {key: training.get(setting) for key, setting in _DEEPSPEED_FROM_TRAINING.items()}
    per_device, accumulation = expected["train_micro_batch_size_per_gpu"], expected["gradient_accumulation_steps"]
    if per_device and accumulation:
        expected["train_batch_size"] = per_device * accumulation * plan.processes
    names = {**_DEEPSPEED_FROM_TRAINING, "train_batch_size": "per-device batch x accumulation x processes"}
    return [
        f"{key}={value} vs {names[key]}={expected[key]}"
        for key, value in plan.deepspeed_fixed.items()
        if expected.get(key) is not None and float(value) != float(expected[key])
    ]


def launch_training_overrides(plan: LaunchPlan, training: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """Training arguments this launch needs changed: ``{key: (value, reason)}`` (empty when none).

    The recipe applies them to the ``SFTConfig`` of this run only; the saved recipe YAML keeps the user's settings.
    """
    overrides: dict[str, tuple[Any, str]] = {}
    if plan.data_parallel and training.get("ddp_find_unused_parameters") is None:
        overrides["ddp_find_unused_parameters"] = (
            False,
            "every LoRA weight is used in every forward pass, so DDP need not search the graph for unused ones",
        )
    if training.get("activation_checkpointing"):
        if plan.strategy == "fsdp" and plan.fsdp_activation_checkpointing and plan.gpu:
            overrides["activation_checkpointing"] = (
                False,
                "FSDP checkpoints activations itself (fsdp_activation_checkpointing); the Trainer refuses both",
            )
        elif plan.strategy == "deepspeed" and plan.zero_stage == 3:
            kwargs = dict(training.get("activation_checkpointing_kwargs") or {})
            if kwargs.get("use_reentrant") is not True:
                overrides["activation_checkpointing_kwargs"] = (
                    {**kwargs, "use_reentrant": True},
                    "PEFT with ZeRO-3 needs reentrant activation checkpointing (huggingface/trl#2514)",
                )
    return overrides


def prepare_launch(config: RecipeConfig, training: dict[str, Any]) -> LaunchPlan:
    """Set up this process's share of the run, check the launch against the recipe, adapt ``training`` to it.

    Initialises the process group with the recipe's settings (which also selects this process's GPU), raises
    ``ConfigError`` from :func:`check_launch` before anything heavy is loaded, logs its warnings, and applies
    :func:`launch_training_overrides` to ``training`` in place, logging each change with its reason.
    """
    from phi3_lora_hub.distributed.processes import is_main_process, process_state

    process_state(config.training)
    plan = read_launch_plan()
    notes = check_launch(plan, config)
    overrides = launch_training_overrides(plan, training)
    if is_main_process():
        logger.info(plan.describe())
        for note in notes:
            logger.warning(note)
        for key, (value, reason) in overrides.items():
            logger.info("training.%s=%r for this launch: %s", key, value, reason)
    training.update({key: value for key, (value, _) in overrides.items()})
    return plan
