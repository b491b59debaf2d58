"""Microsoft's ``loralib`` on Phi-3, interchangeable with PEFT adapters.

    from phi3_lora_hub import Phi3LoraRecipe

    Phi3LoraRecipe(dataset=..., lora={"backend": "loralib", "qkv_slices": ["q", "v"], "target_modules": ["qkv_proj"]})

One job per module: :mod:`.spec` (settings), :mod:`.patching` (put loralib layers into Phi-3), :mod:`.merging`
(loralib's merge-on-eval, kept from corrupting weights), :mod:`.conversion` (loralib ⇄ PEFT tensors),
:mod:`.checkpoint` (files and directory conversion), :mod:`.loading` (checked loading), :mod:`.trainer` (SFTTrainer).
``loralib`` itself is imported only when a function needs it (``pip install 'phi3-lora-hub[loralib]'``).
"""

from __future__ import annotations

from phi3_lora_hub.lazy_exports import lazy_exports

_EXPORTS = {
    "LoralibSpec": "spec",
    "patch_phi3": "patching",
    "merging_disabled": "merging",
    "unmerged": "merging",
    "PeftAdapter": "conversion",
    "loralib_to_peft": "conversion",
    "peft_to_loralib": "conversion",
    "LoralibRecord": "checkpoint",
    "lora_state_dict": "checkpoint",
    "save_adapter": "checkpoint",
    "read_loralib_checkpoint": "checkpoint",
    "read_loralib_record": "checkpoint",
    "convert_loralib_dir": "checkpoint",
    "convert_peft_dir": "checkpoint",
    "LoadReport": "loading",
    "check_lora_state_dict": "loading",
    "load_lora_state_dict": "loading",
    "load_loralib_checkpoint": "loading",
    "load_loralib_model": "loading",
    "LoralibSFTTrainer": "trainer",
    "NotRepresentableError": "errors",
    "LoraKeyMismatchError": "errors",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
