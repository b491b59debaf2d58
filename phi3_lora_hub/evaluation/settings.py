"""The recipe's ``evaluation`` settings: defaults, validation, and what they turn into.

``Phi3LoraRecipe(evaluation={...})``, ``evaluation:`` in the recipe YAML, or ``--set evaluation.num_samples=5``.
Unknown keys and wrong types raise ``ConfigError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import GenerationConfig

from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.errors import ConfigError, unknown_key_error
from phi3_lora_hub.evaluation.metrics import METRICS
from phi3_lora_hub.evaluation.runner import EvalSettings

EVALUATION_DEFAULTS: dict[str, Any] = {
    # After train(), with evaluation data, write <output_dir>/adapter/eval_results.json (base vs adapter).
    "on_train_end": True,
    "include_base": True,
    # Generating is the slow part of an evaluation: cap the number of conversations (None = all).
    "max_examples": 100,
    "max_new_tokens": 128,
    "batch_size": 8,
    "temperature": 0.0,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "seed": 0,
    "metrics": list(METRICS),
    "report_samples": 3,
    # Sample generations at every evaluation and checkpoint: num_samples prompts of the eval (else train) data, or
    # every prompt of sample_prompts (strings or message lists) when given; num_samples=0 turns them off.
    "num_samples": 3,
    "sample_prompts": None,
    "sample_max_new_tokens": 64,
}

_TYPES: dict[str, tuple[type, ...]] = {
    "on_train_end": (bool,),
    "include_base": (bool,),
    "max_examples": (int, type(None)),
    "max_new_tokens": (int,),
    "batch_size": (int,),
    "temperature": (float, int),
    "top_p": (float, int),
    "repetition_penalty": (float, int),
    "seed": (int, type(None)),
    "metrics": (list, tuple),
    "report_samples": (int,),
    "num_samples": (int,),
    "sample_prompts": (list, tuple, type(None)),
    "sample_max_new_tokens": (int,),
}
_POSITIVE = ("max_new_tokens", "batch_size", "sample_max_new_tokens")
_NON_NEGATIVE = ("max_examples", "report_samples", "num_samples")


def resolve_evaluation(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``user`` over :data:`EVALUATION_DEFAULTS`, checking every key, type and range."""
    user = dict(user or {})
    for key, value in user.items():
        if key not in EVALUATION_DEFAULTS:
            raise unknown_key_error("evaluation", key, tuple(EVALUATION_DEFAULTS))
        allowed = _TYPES[key]
        # bool is an int in Python: refuse True where a number is meant, and 1 where a flag is meant.
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ConfigError(f"evaluation.{key} must be {names}, got {value!r}.")
        if key in _POSITIVE and value < 1:
            raise ConfigError(f"evaluation.{key} must be at least 1, got {value}.")
        if key in _NON_NEGATIVE and value is not None and value < 0:
            raise ConfigError(f"evaluation.{key} must be 0 or more, got {value}.")
    merged = {**EVALUATION_DEFAULTS, **user}
    merged["metrics"] = list(merged["metrics"])
    for name in merged["metrics"]:
        if name not in METRICS:
            raise unknown_key_error("metric", name, METRICS, " (evaluation.metrics)")
    try:
        gen_params(merged)
    except ValueError as error:
        raise ConfigError(f"evaluation: {error}") from None
    if merged["sample_prompts"] is not None:
        merged["sample_prompts"] = [
            list(prompt) if not isinstance(prompt, str) else prompt for prompt in merged["sample_prompts"]
        ]
        sample_prompt_messages(merged)
    return merged


def gen_params(section: Mapping[str, Any], *, max_new_tokens: int | None = None) -> GenerationConfig:
    """The generation settings of an ``evaluation`` section (``max_new_tokens`` overrides its own)."""
    return chat_generation_config(
        temperature=float(section["temperature"]),
        top_p=float(section["top_p"]),
        max_new_tokens=max_new_tokens or int(section["max_new_tokens"]),
        repetition_penalty=float(section["repetition_penalty"]),
        seed=section["seed"],
    )


def eval_settings(section: Mapping[str, Any], *, progress: bool = True, max_length: int | None = None) -> EvalSettings:
    """The :class:`EvalSettings` of a resolved ``evaluation`` section."""
    return EvalSettings(
        gen_params=gen_params(section),
        batch_size=int(section["batch_size"]),
        metrics=tuple(section["metrics"]),
        num_samples=int(section["report_samples"]),
        max_length=max_length,
        progress=progress,
    )


def sample_prompt_messages(section: Mapping[str, Any]) -> list[list[dict[str, str]]] | None:
    """The user-given sample prompts as message lists (a plain string is one user turn); ``None`` if not given.

    A prompt given as messages must end with a user turn, since the model answers it.
    """
    prompts = section.get("sample_prompts")
    if prompts is None:
        return None
    result = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            result.append([{"role": "user", "content": prompt}])
            continue
        try:
            messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
        except (TypeError, KeyError):
            raise ConfigError(
                f"evaluation.sample_prompts[{index}] must be a string or a list of {{role, content}} messages."
            ) from None
        if not messages or messages[-1]["role"] != "user":
            raise ConfigError(
                f"evaluation.sample_prompts[{index}] must end with a user message for the model to answer."
            )
        result.append(messages)
    return result
