"""Load loralib weights the way the loralib README does (pretrained first, then LoRA), but checked.

The README's ``model.load_state_dict(lora_state, strict=False)`` silently ignores LoRA tensors the model lacks and
leaves LoRA layers the checkpoint lacks at their initialization. :func:`load_lora_state_dict` compares first and
reports missing, unexpected and wrongly shaped LoRA keys; by default it refuses to load (nothing is changed) when
there are any.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.loralib_backend.checkpoint import read_loralib_checkpoint, read_loralib_record
from phi3_lora_hub.loralib_backend.errors import LoraKeyMismatchError
from phi3_lora_hub.loralib_backend.merging import unmerged
from phi3_lora_hub.loralib_backend.patching import is_patched, patch_phi3
from phi3_lora_hub.loralib_backend.spec import LoralibSpec
from phi3_lora_hub.model.loading import load_phi3_config

logger = logging.getLogger(__name__)

_SHOWN = 8


@dataclass(frozen=True)
class LoadReport:
    """How a LoRA state dict fits a patched model. Keys are the model's names (after any prefix fix)."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    """LoRA tensors of the model that the state dict does not have (they would keep their initial values)."""
    unexpected: tuple[str, ...]
    """Tensors of the state dict that the model does not have (they would be ignored)."""
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    """``(key, shape in the state dict, shape in the model)``: a different rank or q/k/v slices."""
    prefix_fix: str | None = None
    """``"added 'model.'"`` or ``"removed 'model.'"`` when the keys were relative to another module of Phi-3."""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """Every problem, a few keys each, and what to do."""
        lines = []
        if self.missing:
            lines.append(f"{len(self.missing)} LoRA tensors of the model are missing: {_some(self.missing)}")
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} tensors are not in the model: {_some(self.unexpected)}")
        if self.mismatched:
            shown = ", ".join(f"{key} {tuple(a)} vs model {tuple(b)}" for key, a, b in self.mismatched[:_SHOWN])
            lines.append(f"{len(self.mismatched)} tensors have another shape: {shown}")
        if not lines:
            return f"all {len(self.loaded)} tensors fit"
        lines.append(
            "Patch the base model with the spec the checkpoint was trained with (its loralib_config.json: "
            "target_modules, qkv_slices, r); load_loralib_checkpoint does that for you."
        )
        return "\n".join(lines)


def _some(keys: tuple[str, ...]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _align_prefix(keys: list[str], model_keys: set[str]) -> tuple[dict[str, str], str | None]:
    """Map state dict keys onto the model's, adding or removing a leading ``model.`` when that fits more keys."""
    candidates = {
        None: {key: key for key in keys},
        "added 'model.'": {key: f"model.{key}" for key in keys},
        "removed 'model.'": {key: key.removeprefix("model.") for key in keys},
    }
    best = max(candidates, key=lambda name: sum(value in model_keys for value in candidates[name].values()))
    if sum(value in model_keys for value in candidates[best].values()) <= sum(key in model_keys for key in keys):
        best = None  # prefer the keys as they are unless a fix matches strictly more
    return candidates[best], best


def check_lora_state_dict(model: Any, state_dict: dict[str, Any]) -> LoadReport:
    """Compare a loralib state dict with a patched ``model`` without loading anything."""
    return _compare(model, state_dict)[0]


def _compare(model: Any, state_dict: dict[str, Any]) -> tuple[LoadReport, dict[str, str]]:
    model_state = model.state_dict()
    mapping, prefix_fix = _align_prefix(list(state_dict), set(model_state))
    loaded, unexpected, mismatched = [], [], []
    for key, target in mapping.items():
        if target not in model_state:
            unexpected.append(key)
        elif tuple(state_dict[key].shape) != tuple(model_state[target].shape):
            mismatched.append((target, tuple(state_dict[key].shape), tuple(model_state[target].shape)))
        else:
            loaded.append(target)
    provided = set(mapping.values())
    missing = [key for key in model_state if "lora_" in key and key not in provided]
    report = LoadReport(tuple(loaded), tuple(missing), tuple(unexpected), tuple(mismatched), prefix_fix)
    return report, mapping


def load_lora_state_dict(model: Any, state_dict: dict[str, Any], *, strict: bool = True) -> LoadReport:
    """Load LoRA weights into a patched ``model`` (after its pretrained weights), reporting every key mismatch.

    With ``strict=True`` any missing, unexpected or wrongly shaped key raises :class:`LoraKeyMismatchError` (with
    the :class:`LoadReport`) before anything is loaded. With ``strict=False`` the fitting tensors are loaded and the
    problems are logged as a warning and returned. Merged layers are unmerged around the load, so loralib's later
    unmerge subtracts the right update.
    """
    report, mapping = _compare(model, state_dict)
    if not report.ok:
        if strict:
            raise LoraKeyMismatchError(f"The LoRA state dict does not fit the model:\n{report.describe()}", report)
        logger.warning("Loading the LoRA state dict partially:\n%s", report.describe())
    loaded = set(report.loaded)
    fitting = {mapping[key]: tensor for key, tensor in state_dict.items() if mapping[key] in loaded}
    with unmerged(model):
        model.load_state_dict(fitting, strict=False)
    return report


def load_loralib_checkpoint(
    model: Any,
    directory: str | Path,
    *,
    spec: LoralibSpec | None = None,
    weights: str | Path | None = None,
    strict: bool = True,
) -> LoadReport:
    """Patch a freshly loaded Phi-3 ``model`` as the checkpoint says (unless it is patched) and load its LoRA weights.

    ``spec``/``weights`` are for checkpoints without ``loralib_config.json`` (see ``read_loralib_checkpoint``).
    """

    state, record = read_loralib_checkpoint(directory, spec=spec, weights=weights)
    if not is_patched(model):
        patch_phi3(model, record.spec)
    return load_lora_state_dict(model, state, strict=strict)


def load_loralib_model(
    checkpoint: str | Path,
    base_model: str | Path | None = None,
    *,
    revision: str | None = None,
    dtype: str = "float32",
    strict: bool = True,
) -> Any:
    """A Phi-3 model with a loralib checkpoint applied: pretrained base first, then the LoRA weights (checked).

    ``base_model`` defaults to the one recorded in the checkpoint's ``loralib_config.json``. The model is in eval
    mode, so with ``merge_weights`` the LoRA update is folded into the weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    record = read_loralib_record(checkpoint)
    base = base_model or (record.base_model_name_or_path if record else None)
    if base is None:
        raise ConfigError(f"{checkpoint} does not record its base model: pass base_model=.")
    revision = revision if revision is not None else (record.revision if record and base_model is None else None)
    load_phi3_config(str(base), revision)
    model = AutoModelForCausalLM.from_pretrained(
        str(base), revision=revision, dtype=getattr(torch, dtype), trust_remote_code=False
    )
    load_loralib_checkpoint(model, checkpoint, strict=strict)
    model.eval()
    return model
