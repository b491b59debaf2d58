"""An adapter's ``adapter_config.json``, read and checked in one place for evaluation, ``compare`` and the Space:
a JSON object of sane size describing a LoRA adapter for a causal LM.

Where the adapter comes from (a local directory, a Hub snapshot, the Space's checked two-file fetch) and whether
it fits a given base (the Space's :mod:`phi3_lora_hub.space.compat`) are the callers' business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ModelError
from phi3_lora_hub.hub.files import ADAPTER_CONFIG

MAX_CONFIG_BYTES = 1_000_000
"""No LoRA config comes near this; a larger file is refused before it is parsed."""


def check_lora_config(config: Mapping, source: str) -> None:
    """Raise ``ModelError`` unless ``config`` (a parsed ``adapter_config.json``) is a LoRA adapter for a causal LM.

    ``source`` names the adapter in the message (a directory, or a Hub repo at a revision).
    """
    if config.get("peft_type") != "LORA":
        raise ModelError(f"{source} holds a {config.get('peft_type')!r} adapter; only LoRA adapters are supported.")
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise ModelError(f"{source} is a {config['task_type']} adapter; a CAUSAL_LM adapter is needed.")


def read_adapter_config(path: str | Path, source: str | None = None) -> dict[str, Any]:
    """The ``adapter_config.json`` at ``path`` (the file, or the adapter directory holding it), checked to be a
    JSON object of at most 1 MB describing a LoRA adapter for a causal LM; ``ModelError`` saying what is wrong.

    ``source`` names the adapter in messages (default: the directory).
    """
    path = Path(path)
    file = path / ADAPTER_CONFIG if path.is_dir() or not path.name.endswith(".json") else path
    source = source or str(file.parent)
    if not file.is_file():
        raise ModelError(f"{source} is not a PEFT adapter: it has no {ADAPTER_CONFIG}.")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{source}: {ADAPTER_CONFIG} is larger than 1 MB, which no LoRA config is.")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelError(f"{source}: {ADAPTER_CONFIG} is not valid JSON.") from None
    if not isinstance(config, dict):
        raise ModelError(f"{source}: {ADAPTER_CONFIG} is not a JSON object.")
    check_lora_config(config, source)
    return config
