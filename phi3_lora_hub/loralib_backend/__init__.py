"""Microsoft's ``loralib`` on Phi-3, interchangeable with PEFT adapters.

    from phi3_lora_hub import Phi3LoraRecipe

    Phi3LoraRecipe(dataset=..., lora={"backend": "loralib", "qkv_slices": ["q", "v"], "target_modules": ["qkv_proj"]})

One job per module: :mod:`.spec` (settings), :mod:`.patching` (put loralib layers into Phi-3), :mod:`.merging`
(loralib's merge-on-eval, kept from corrupting weights), :mod:`.conversion` (loralib ⇄ PEFT tensors),
:mod:`.checkpoint` (files and directory conversion), :mod:`.loading` (checked loading), :mod:`.trainer` (SFTTrainer).
``loralib`` itself is imported only when a function needs it (``pip install 'phi3-lora-hub[loralib]'``).
"""
