"""LoRA settings: Phi-3 defaults, merged with the user's dict and checked against ``peft.LoraConfig`` (or loralib)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from phi3_lora_hub.config.field_types import check_values, coerce_numbers
from phi3_lora_hub.errors import ConfigError, unknown_key_error
from phi3_lora_hub.loralib_backend import spec as loralib_spec
from phi3_lora_hub.model.targets import PHI3_TARGET_MODULES

# Keys the recipe sets itself, so a user value would only conflict.
RESERVED_KEYS: dict[str, str] = {
    "task_type": "The recipe always trains a CAUSAL_LM adapter.",
    "peft_type": "The recipe trains LoRA adapters.",
    "base_model_name_or_path": "It is filled in from model=.",
    "revision": "Pass model_revision= to Phi3LoraRecipe instead.",
    "inference_mode": "The recipe trains the adapter (inference_mode=False) and saves it for inference.",
}

LORA_DEFAULTS: dict[str, Any] = {
    # r=16, alpha=32 (scale 2) is the setting of Microsoft's sample_finetune.py, TRL and AutoTrain for Phi-3:
    # 25.2M trainable parameters on Phi-3-mini, about 0.7% of the model.
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "bias": "none",
    "target_modules": list(PHI3_TARGET_MODULES),
    # Keep the embeddings and lm_head frozen: the Phi-3 template needs no new tokens.
    "modules_to_save": None,
    "use_rslora": False,
    "use_dora": False,
    "init_lora_weights": True,
}


@lru_cache(maxsize=1)
def lora_config_fields() -> tuple[str, ...]:
    """Names of every ``peft.LoraConfig`` field."""
    from peft import LoraConfig

    return tuple(field.name for field in dataclasses.fields(LoraConfig) if field.init)


def resolve_lora(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``user`` over the defaults; an unknown or reserved key, or a value that does not fit the field's type in
    ``peft.LoraConfig`` (or that ``LoraConfig`` itself rejects), raises a ``ConfigError`` naming it.

    ``backend="loralib"`` selects Microsoft's loralib layers instead of PEFT: its settings are validated by
    :func:`phi3_lora_hub.loralib_backend.spec.resolve_loralib_settings` and keep ``backend`` in the result;
    PEFT settings never carry it (``build_lora_config`` passes them straight to ``peft.LoraConfig``).

    Whether ``target_modules`` exist in the model is checked when the model is loaded
    (:func:`phi3_lora_hub.model.targets.check_target_modules`).
    """
    from peft import LoraConfig

    valid = lora_config_fields()
    user = coerce_numbers(dict(user or {}), LoraConfig)
    backend = user.get(loralib_spec.BACKEND_KEY, loralib_spec.PEFT_BACKEND)
    if backend not in loralib_spec.BACKENDS:
        raise ConfigError(f"lora backend must be one of {list(loralib_spec.BACKENDS)}, got {backend!r}.")
    if backend == loralib_spec.LORALIB_BACKEND:  # Microsoft's loralib layers: its own keys, not peft.LoraConfig's
        for key in user:
            if key in RESERVED_KEYS:
                raise ConfigError(f"lora key {key!r} is managed by the recipe. {RESERVED_KEYS[key]}")
        return loralib_spec.resolve_loralib_settings(user, LORA_DEFAULTS, valid)
    user.pop(loralib_spec.BACKEND_KEY, None)
    for key in user:
        if key in RESERVED_KEYS:
            raise ConfigError(f"lora key {key!r} is managed by the recipe. {RESERVED_KEYS[key]}")
        if key in loralib_spec.LORALIB_ONLY_KEYS:
            raise ConfigError(f"lora key {key!r} only applies to backend='loralib' (it sets loralib's {key}).")
        if key not in valid:
            suggestions = [k for k in valid if k not in RESERVED_KEYS] + [loralib_spec.BACKEND_KEY]
            raise unknown_key_error("lora", key, suggestions, " (see peft.LoraConfig)")
    check_values("lora", user, LoraConfig)
    merged = {**LORA_DEFAULTS, **user}
    if not isinstance(merged["r"], int) or merged["r"] <= 0:
        raise ConfigError(f"lora r must be a positive integer, got {merged['r']!r}.")
    if isinstance(merged["target_modules"], tuple):
        merged["target_modules"] = list(merged["target_modules"])
    try:  # PEFT's own checks of the values (combinations, ranges), now rather than when the trainer is built
        build_lora_config(merged)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"lora settings rejected by peft.LoraConfig: {error}") from None
    return merged


def build_lora_config(settings: Mapping[str, Any], base_model_name_or_path: str | None = None):
    """A ``peft.LoraConfig`` for causal-LM training from resolved settings."""
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", base_model_name_or_path=base_model_name_or_path, **settings)
