"""Decoding settings as a ``transformers.GenerationConfig``: built from the CLI flags and Space controls,
recorded in votes, reports and sample files as a plain dict, and read back from those files.

The seed travels on the config as its ``seed`` entry (``GenerationConfig`` keeps and serialises entries it does
not know); :mod:`phi3_lora_hub.generation` seeds a private RNG state with it. Records written before the
settings were a ``GenerationConfig`` hold ``temperature``, ``top_p``, ``max_new_tokens``,
``repetition_penalty`` and ``seed`` only, and read back to the same decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import GenerationConfig

DEFAULT_MAX_NEW_TOKENS = 256


def chat_generation_config(
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    repetition_penalty: float = 1.0,
    seed: int | None = 0,
) -> GenerationConfig:
    """The ``GenerationConfig`` of the CLI flags and Space controls: greedy at ``temperature=0``, else sampling
    with ``temperature`` and ``top_p``. ``seed`` is kept as the config's ``seed`` entry (``None``: unseeded).

    Raises ``ValueError`` naming the setting that is out of range.
    """
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    settings: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0, "seed": seed}
    if temperature > 0:
        settings |= {"temperature": temperature, "top_p": top_p}
    if repetition_penalty != 1.0:
        settings["repetition_penalty"] = repetition_penalty
    return GenerationConfig(**settings)


def settings_of(config: GenerationConfig) -> dict[str, Any]:
    """The entries of ``config`` that differ from ``GenerationConfig``'s defaults, ``seed`` included, as a plain
    JSON-able dict (without the transformers version): what votes, reports and sample files record."""
    settings = config.to_diff_dict()
    settings.pop("transformers_version", None)
    return settings


def config_from_settings(settings: Mapping[str, Any]) -> GenerationConfig:
    """The ``GenerationConfig`` a record's settings describe: :func:`settings_of` output, or the five entries
    records held before (no ``do_sample`` entry; ``temperature=0`` meant greedy)."""
    if "do_sample" not in settings:
        return chat_generation_config(**settings)
    return GenerationConfig(**settings)


def is_greedy(config: GenerationConfig) -> bool:
    """True when ``config`` decodes greedily (one beam, no sampling)."""
    return not config.do_sample and (config.num_beams or 1) == 1


def describe_decoding(config: GenerationConfig) -> str:
    """``greedy`` or ``temperature T, top_p P``, for reports."""
    if is_greedy(config):
        return "greedy"
    top_p = 1.0 if config.top_p is None else config.top_p
    return f"temperature {config.temperature}, top_p {top_p}"
