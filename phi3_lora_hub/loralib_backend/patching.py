"""Put loralib layers into a Phi-3 model, the way the loralib README does it by hand.

- ``qkv_proj`` becomes ``lora.MergedLinear(enable_lora=[q, k, v])`` (or ``lora.Linear`` with ``qkv_slices="fused"``),
- every other targeted ``nn.Linear`` becomes ``lora.Linear``, ``embed_tokens`` becomes ``lora.Embedding``,
- then ``lora.mark_only_lora_as_trainable(model, bias=spec.bias)``.

The pretrained weight (and bias) *objects* move into the new layers, so nothing is copied and the patched model's
output equals the base model's until the LoRA weights are trained (``lora_B`` or, for embeddings, ``lora_A`` starts
at zero). LoRA parameters take the dtype and device of the weight they adapt, as loralib's own constructors do.
"""

from __future__ import annotations

import math
from typing import Any

from phi3_lora_hub.errors import ModelError
from phi3_lora_hub.loralib_backend.dependency import require_loralib
from phi3_lora_hub.loralib_backend.spec import EMBEDDING_MODULES, FUSED, QKV_MODULE, LoralibSpec, matches_target


def target_module_names(model: Any, spec: LoralibSpec) -> list[str]:
    """Full names of the modules of ``model`` that ``spec`` targets, in model order."""
    return [name for name, _ in model.named_modules() if name and spec.targets(name)]


def is_patched(model: Any) -> bool:
    """Whether ``model`` already holds loralib LoRA layers."""
    lora = require_loralib()
    return any(isinstance(module, lora.LoRALayer) for module in model.modules())


def patch_phi3(model: Any, spec: LoralibSpec, *, seed: int | None = None) -> list[str]:
    """Replace every module ``spec`` targets with its loralib layer, in place; return the replaced module names.

    With ``seed`` the random LoRA weights are drawn from generators seeded with it, so the same seed gives the same
    adapter in every process and run, whatever the global RNG holds (the recipe passes ``training.seed``); without
    it they come from torch's global RNG, as loralib's own constructors do.
    Afterwards only LoRA parameters (and biases, per ``spec.bias``) are trainable. Raises ``ModelError`` when a
    target matches nothing, matches a module loralib cannot wrap, the model is already patched, or q/k/v slices are
    requested on a model whose slices differ in size (grouped-query attention).
    """
    import torch

    lora = require_loralib()
    if getattr(getattr(model, "config", None), "model_type", None) != "phi3":
        raise ModelError("patch_phi3 patches Phi-3 models (model_type 'phi3'), whose qkv_proj holds [q; k; v] rows.")
    if is_patched(model):
        raise ModelError("The model already holds loralib layers; patch a freshly loaded base model.")
    names = target_module_names(model, spec)
    random = _LoraRandom(seed)
    for target in spec.target_modules:
        if not any(matches_target(name, target) for name in names):
            raise ModelError(f"lora target_modules entry {target!r} matches no module of {type(model).__name__}.")
    for name in names:
        base = model.get_submodule(name)
        short = name.rsplit(".", 1)[-1]
        if isinstance(base, torch.nn.Embedding) and short in EMBEDDING_MODULES:
            layer = _embedding(lora, base, spec, random)
        elif type(base) is torch.nn.Linear and short == QKV_MODULE and spec.qkv_slices != FUSED:
            _check_equal_slices(model.config, base)
            layer = _merged_linear(lora, base, spec, random)
        elif type(base) is torch.nn.Linear:
            layer = _linear(lora, base, spec, random)
        else:
            raise ModelError(
                f"{name} is a {type(base).__name__}; the loralib backend wraps plain torch.nn.Linear layers and "
                "embed_tokens (quantized layers are not supported: use backend='peft' for QLoRA)."
            )
        layer.train(base.training)  # match the model's mode (from_pretrained leaves it in eval())
        model.set_submodule(name, layer)
    lora.mark_only_lora_as_trainable(model, bias=spec.bias)
    return names


def _check_equal_slices(config: Any, qkv: Any) -> None:
    """``MergedLinear`` splits ``out_features`` into equal thirds; Phi-3 with GQA has a larger q than k and v."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    if kv_heads != heads or qkv.out_features != 3 * heads * head_dim:
        raise ModelError(
            f"qkv_proj has q = {heads * head_dim} rows but k = v = {kv_heads * head_dim} rows (grouped-query "
            "attention); loralib.MergedLinear needs three equal slices. Use qkv_slices='fused' or backend='peft'."
        )


class _LoraRandom:
    """Where the random LoRA weights come from: one generator per device seeded with ``seed``, or the global RNG."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.generators: dict[Any, Any] = {}

    def generator(self, tensor: Any) -> Any:
        """The generator for ``tensor``'s device (``None``: torch's global RNG)."""
        import torch

        if self.seed is None:
            return None
        if tensor.device not in self.generators:
            self.generators[tensor.device] = torch.Generator(device=tensor.device).manual_seed(self.seed)
        return self.generators[tensor.device]


def _linear(lora: Any, base: Any, spec: LoralibSpec, random: _LoraRandom) -> Any:
    import torch

    with torch.device("meta"):  # build without allocating or initializing a second copy of the weight
        layer = lora.Linear(
            base.in_features,
            base.out_features,
            r=spec.r,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            merge_weights=spec.merge_weights,
            bias=base.bias is not None,
            dtype=base.weight.dtype,
        )
    _adopt_weights(layer, base)
    _init_linear_lora(layer, base.weight, random)
    return layer


def _merged_linear(lora: Any, base: Any, spec: LoralibSpec, random: _LoraRandom) -> Any:
    import torch

    with torch.device("meta"):
        layer = lora.MergedLinear(
            base.in_features,
            base.out_features,
            r=spec.r,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            enable_lora=spec.enable_lora,
            merge_weights=spec.merge_weights,
            bias=base.bias is not None,
            dtype=base.weight.dtype,
        )
    _adopt_weights(layer, base)
    _init_linear_lora(layer, base.weight, random)
    # loralib keeps the row mask as a plain attribute (not a buffer); rebuild it off the meta device, as loralib does.
    mask = torch.zeros(base.out_features, dtype=torch.bool, device=base.weight.device).view(len(spec.enable_lora), -1)
    for index, enabled in enumerate(spec.enable_lora):
        mask[index, :] = enabled
    layer.lora_ind = mask.view(-1)
    return layer


def _embedding(lora: Any, base: Any, spec: LoralibSpec, random: _LoraRandom) -> Any:
    import torch

    with torch.device("meta"):
        layer = lora.Embedding(
            base.num_embeddings,
            base.embedding_dim,
            r=spec.r,
            lora_alpha=spec.lora_alpha,
            merge_weights=spec.merge_weights,
            padding_idx=base.padding_idx,
            max_norm=base.max_norm,
            norm_type=base.norm_type,
            scale_grad_by_freq=base.scale_grad_by_freq,
            sparse=base.sparse,
            dtype=base.weight.dtype,
        )
    layer.weight = base.weight
    # loralib's Embedding init: A = 0, B ~ N(0, 1), so the update B·A starts at zero.
    layer.lora_A = _materialized(layer.lora_A, base.weight)
    layer.lora_B = _materialized(layer.lora_B, base.weight)
    torch.nn.init.zeros_(layer.lora_A)
    torch.nn.init.normal_(layer.lora_B, generator=random.generator(layer.lora_B))
    return layer


def _adopt_weights(layer: Any, base: Any) -> None:
    layer.weight = base.weight
    if base.bias is not None:
        layer.bias = base.bias


def _init_linear_lora(layer: Any, weight: Any, random: _LoraRandom) -> None:
    """loralib's Linear/MergedLinear init: A like ``nn.Linear`` (Kaiming uniform, a=√5), B = 0."""
    import torch

    layer.lora_A = _materialized(layer.lora_A, weight)
    layer.lora_B = _materialized(layer.lora_B, weight)
    torch.nn.init.kaiming_uniform_(layer.lora_A, a=math.sqrt(5), generator=random.generator(layer.lora_A))
    torch.nn.init.zeros_(layer.lora_B)


def _materialized(meta_parameter: Any, like: Any) -> Any:
    import torch

    return torch.nn.Parameter(torch.empty(meta_parameter.shape, dtype=like.dtype, device=like.device))
