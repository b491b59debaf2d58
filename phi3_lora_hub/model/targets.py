"""Check LoRA ``target_modules`` against the modules that really exist in the model.

PEFT only errors when *no* entry matches, so a list written for Llama (``q_proj``, ``gate_proj``, ...) silently
trains two of Phi-3's four projections. Here every entry must match at least one module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from phi3_lora_hub.errors import ModelError, closest

ALL_LINEAR = "all-linear"
# Phi-3 fuses q/k/v into `qkv_proj` and gate/up into `gate_up_proj`. The split names used by Llama recipes match
# nothing (except o_proj/down_proj) and PEFT only errors when *nothing* matches, so a wrong list silently trains
# a fraction of the model. These four are every linear layer of a Phi-3 block.
PHI3_TARGET_MODULES: tuple[str, ...] = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def linear_module_names(model) -> list[str]:
    """Short names (last path component) of the linear layers LoRA can target, ``lm_head`` excluded."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in {"Linear4bit", "Linear8bitLt"}:
            short = name.rsplit(".", 1)[-1]
            if short != "lm_head":
                names.add(short)
    return sorted(names)


def check_target_modules(model, target_modules: str | Sequence[str] | None) -> None:
    """Raise ``ModelError`` naming every ``target_modules`` entry that matches no module of ``model``."""
    if target_modules is None or target_modules == ALL_LINEAR:
        return
    module_names = [name for name, _ in model.named_modules()]
    if isinstance(target_modules, str):  # PEFT reads a single string as a full-match regex
        if not any(re.fullmatch(target_modules, name) for name in module_names):
            raise ModelError(f"lora target_modules regex {target_modules!r} matches no module of the model.")
        return
    available = linear_module_names(model)
    for entry in target_modules:
        if not any(name == entry or name.endswith("." + entry) for name in module_names):
            suggestion = closest(entry, available)
            hint = f" Did you mean {suggestion!r}?" if suggestion else ""
            raise ModelError(
                f"lora target_modules entry {entry!r} matches no module of this {type(model).__name__}.{hint} "
                f"Phi-3 fuses q/k/v into 'qkv_proj' and gate/up into 'gate_up_proj'; its linear layers are: "
                f"{', '.join(available)} (or use 'all-linear')."
            )
