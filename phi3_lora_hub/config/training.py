"""Training settings: Phi-3 LoRA defaults, merged with the user's dict and checked against ``trl.SFTConfig``."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from phi3_lora_hub.config.field_types import check_values, coerce_numbers, field_types
from phi3_lora_hub.errors import ConfigError, unknown_key_error
from phi3_lora_hub.hardware import Hardware

# Keys the recipe owns. Setting them in `training` would bypass the recipe's own handling, so each gets a hint.
RESERVED_KEYS: dict[str, str] = {
    "output_dir": "Pass output_dir= to Phi3LoraRecipe instead.",
    "hub_token": "Never put a token in the training arguments (it is pickled into training_args.bin); "
    "set HF_TOKEN or run `hf auth login`.",
    "push_to_hub": "Set hub_model_id= on the recipe: its callback pushes every checkpoint.",
    "hub_model_id": "Pass hub_model_id= to Phi3LoraRecipe instead.",
    "hub_strategy": "The recipe's Hub callback replaces the Trainer's push; set hub_model_id= on the recipe.",
    "gradient_checkpointing": "It is a deprecated alias: use 'activation_checkpointing'.",
    "gradient_checkpointing_kwargs": "It is a deprecated alias: use 'activation_checkpointing_kwargs'.",
    "assistant_only_loss": "Pass assistant_only_loss= to Phi3LoraRecipe: the recipe masks from the Phi-3 format.",
    "completion_only_loss": "Pass assistant_only_loss= to Phi3LoraRecipe: the recipe masks from the Phi-3 format.",
    "trust_remote_code": "The recipe always loads Phi-3 with trust_remote_code=False (transformers has native Phi-3).",
    "model_init_kwargs": "The recipe loads the model itself; use attn_implementation=, dtype= or quantization=.",
    "dataset_text_field": "The recipe converts every supported format itself; use format= to force one.",
}


# Names from older TRL/transformers releases (and the Phi-3 cookbook) that users still type.
RENAMED_KEYS: dict[str, str] = {
    "max_seq_length": "max_length",
    "evaluation_strategy": "eval_strategy",
    "warmup_ratio": "warmup_steps",  # a float below 1 is read as a ratio of the total steps
}


# What a Phi-3-mini LoRA micro-batch keeps for the backward without activation checkpointing, per token (bf16,
# all-linear LoRA with dropout: ~220 KB per layer x 32 layers, measured with saved-tensor hooks), and the memory that
# does not grow with the batch (bf16 weights 7.6 GB, adapter with its Adam states, CUDA workspaces), both rounded up.
PHI3_MINI_ACTIVATION_BYTES_PER_TOKEN = 7.5 * 2**20
# With Liger's RMSNorm, RoPE and SwiGLU kernels (applied on CUDA when installed): 40.6 GiB peak for micro-batches of
# up to ~8,000 tokens and 29.1 GiB for ~6,000 on the lent H200 (issue 16, run 1), ~4.2 MiB per token, rounded up.
PHI3_MINI_LIGER_ACTIVATION_BYTES_PER_TOKEN = 5 * 2**20
PHI3_MINI_FIXED_BYTES = 10 * 2**30
# Share of the GPU's memory the estimate may fill: the rest is for allocator fragmentation and the loss head.
_USABLE_MEMORY = 0.9


def activations_fit(hardware: Hardware, tokens: int) -> bool:
    """True when a Phi-3-mini LoRA micro-batch of ``tokens`` tokens fits on the GPU without activation
    checkpointing (estimate above); False without a GPU or when its memory is unknown."""
    per_token = PHI3_MINI_LIGER_ACTIVATION_BYTES_PER_TOKEN if hardware.liger else PHI3_MINI_ACTIVATION_BYTES_PER_TOKEN
    needed = PHI3_MINI_FIXED_BYTES + tokens * per_token
    return hardware.cuda and needed <= _USABLE_MEMORY * hardware.gpu_memory_bytes


def gpu_micro_batch(training: Mapping[str, Any], hardware: Hardware) -> dict[str, int]:
    """The global batch of ``training`` (rows per device x accumulation) in the largest micro-batches whose
    longest case (every row ``max_length`` tokens) fits in the GPU's memory without activation checkpointing; the
    configured split where none does. Larger micro-batches give the GPU larger matmuls and fewer optimizer-step
    overheads for the same tokens per update."""
    rows = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    length = training.get("max_length") or 4096
    for micro in sorted((d for d in range(1, rows + 1) if rows % d == 0), reverse=True):
        if micro > training["per_device_train_batch_size"] and activations_fit(hardware, micro * length):
            return {"per_device_train_batch_size": micro, "gradient_accumulation_steps": rows // micro}
    return {}


def training_defaults(hardware: Hardware) -> dict[str, Any]:
    """The recipe's defaults for ``trl.SFTConfig``, each chosen for LoRA on Phi-3 and this machine."""
    gpu = hardware.cuda
    return {
        # LoRA needs a learning rate ~10x full fine-tuning: TRL's 2e-5 default and the model card's 5e-6 barely
        # move an adapter; 1e-4 with cosine decay and 10% warm-up is what LoRA recipes for Phi-3 converge on.
        "learning_rate": 1e-4,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "num_train_epochs": 1.0,
        "max_steps": -1,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "gradient_accumulation_steps": 4,
        # Phi-3-mini's context is 4k; 2048 covers almost every chat turn set and keeps memory predictable.
        # The data pipeline truncates to it (keeping the start, as TRL does) before the trainer sees the rows.
        "max_length": 2048,
        # Padding-free batches: the examples of a batch are concatenated into one row with per-sequence position
        # ids, so no compute goes to padding. Exact: each sequence attends to itself only (FlashAttention's varlen
        # kernels, or the recipe's per-sequence SDPA; tests/performance prove the loss equals the padded one).
        # Turned off below for a batch size of 1, where there is no padding to save.
        "padding_free": True,
        # bf16 where the GPU computes it natively. fp32 on CPU: bf16 autocast only pays on CPUs with native bf16
        # (AVX512-BF16, AMX), where it is faster (benchmarks/RESULTS.md); the recipe keeps CPU training fp32-exact.
        "bf16": hardware.bf16,
        "fp16": False,
        "use_cpu": not gpu,
        # Gradient checkpointing pays on a GPU whose memory the activations would overflow (resolve_training turns
        # it off where they fit: recomputing the forward costs a third more compute); on CPU it only costs time.
        "activation_checkpointing": gpu,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if gpu else None,
        "optim": "adamw_torch_fused" if gpu else "adamw_torch",
        "logging_steps": 10,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": 100,
        "save_total_limit": 3,
        "eval_strategy": "no",
        "report_to": "none",
        "seed": 42,
        "data_seed": 42,
        "dataloader_num_workers": 0,
    }


@lru_cache(maxsize=1)
def sft_config_fields() -> tuple[str, ...]:
    """Names of every ``trl.SFTConfig`` field (TrainingArguments included)."""
    from trl import SFTConfig

    return tuple(field_types(SFTConfig))


def resolve_training(user: Mapping[str, Any] | None, hardware: Hardware) -> dict[str, Any]:
    """Merge ``user`` over the defaults; an unknown or reserved key, or a value that does not fit the field's type
    in ``trl.SFTConfig``, raises a ``ConfigError`` naming it."""
    user = dict(user or {})
    valid = sft_config_fields()
    for key in user:
        if key in RESERVED_KEYS:
            raise ConfigError(f"training key {key!r} is managed by the recipe. {RESERVED_KEYS[key]}")
        if key in RENAMED_KEYS:
            raise ConfigError(
                f"Unknown training key {key!r}. Did you mean {RENAMED_KEYS[key]!r}? (renamed in trl.SFTConfig)"
            )
        if key not in valid:
            raise unknown_key_error(
                "training", key, [k for k in valid if k not in RESERVED_KEYS], " (see trl.SFTConfig)"
            )
    from trl import SFTConfig

    user = coerce_numbers(user, SFTConfig)
    check_values("training", user, SFTConfig)
    merged = training_defaults(hardware)
    merged.update(user)
    if "padding_free" not in user and merged["per_device_train_batch_size"] == 1 and not merged.get("packing"):
        merged["padding_free"] = False
    if not merged["padding_free"] and not merged.get("packing") and "train_sampling_strategy" not in user:
        # Padded batches: draw examples of similar length together, so little of each batch is padding. (With
        # padding-free batches there is no padding to save, and random order keeps batches unbiased.)
        merged["train_sampling_strategy"] = "group_by_length"
    if hardware.cuda and not {"per_device_train_batch_size", "gradient_accumulation_steps"} & user.keys():
        merged.update(gpu_micro_batch(merged, hardware))
    if hardware.cuda and "activation_checkpointing" not in user:
        # Sized for the longest micro-batch the data pipeline lets through. Phi-3-medium keeps ~2.5x more
        # activations per token: set activation_checkpointing=True for it on a GPU that only fits Phi-3-mini's.
        tokens = merged["per_device_train_batch_size"] * (merged.get("max_length") or 4096)
        merged["activation_checkpointing"] = not activations_fit(hardware, tokens)
    if merged.get("bf16") and merged.get("fp16"):
        raise ConfigError("training sets both bf16 and fp16: choose one.")
    if merged.get("bf16") and not hardware.bf16:
        raise ConfigError(
            f"training sets bf16=True but this machine ({hardware.device_name}) has no native bfloat16; remove it."
        )
    return merged
