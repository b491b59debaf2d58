"""The launch checked against the recipe up front, and the training arguments adapted to it.

:func:`check_launch` stops a run whose launch settings (read by
:func:`~phi3_lora_hub.distributed.launch_plan.read_launch_plan`) would break the recipe (an FSDP checkpoint without
adapter weights, a ZeRO-3 save that cannot be gathered) before hours of loading and training, and
:func:`launch_training_overrides` adapts the few training arguments that depend on the launch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from phi3_lora_hub.distributed.launch_plan import DEEPSPEED_FROM_TRAINING, LaunchPlan, read_launch_plan
from phi3_lora_hub.distributed.processes import is_main_process, process_state
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.loralib_backend.spec import is_loralib

if TYPE_CHECKING:
    from phi3_lora_hub.config.recipe_config import RecipeConfig

logger = logging.getLogger(__name__)

EXAMPLES_HINT = "see examples/accelerate/ and examples/README.md"


def check_launch(plan: LaunchPlan, config: RecipeConfig) -> list[str]:
    """Raise ``ConfigError`` when the launch cannot produce a usable adapter with this recipe; return warnings.

    Errors: FSDP saving sharded state dicts (checkpoints without ``adapter_model.safetensors``), ZeRO-3 without
    16-bit weight gathering (same), the loralib backend with sharded weights (its save reads local tensors), and
    QLoRA under ZeRO-3 (the recipe places each 4-bit model with ``device_map``, which ZeRO-3 refuses).
    """
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
    expected = {key: training.get(setting) for key, setting in DEEPSPEED_FROM_TRAINING.items()}
    per_device, accumulation = expected["train_micro_batch_size_per_gpu"], expected["gradient_accumulation_steps"]
    if per_device and accumulation:
        expected["train_batch_size"] = per_device * accumulation * plan.processes
    names = {**DEEPSPEED_FROM_TRAINING, "train_batch_size": "per-device batch x accumulation x processes"}
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
