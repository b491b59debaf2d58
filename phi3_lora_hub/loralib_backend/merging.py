"""Control loralib's merge-on-``eval()`` so it cannot corrupt training or loading.

With ``merge_weights=True`` loralib adds ``B·A·scaling`` into the frozen weight on ``eval()`` and subtracts it on
``train()``. In floating point ``(W + Δ) − Δ`` is not always ``W``: every eval/train switch (the Trainer evaluates
mid-training) can move the pretrained weights by an ulp, and loading new LoRA weights into a merged layer would
subtract the wrong Δ later. :func:`merging_disabled` and :func:`unmerged` keep the weights unmerged where it matters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from phi3_lora_hub.loralib_backend.dependency import require_loralib


def lora_layers(model: Any) -> list[Any]:
    """Every loralib LoRA layer of ``model`` (``lora.Linear``, ``MergedLinear``, ``Embedding``, ...)."""
    lora = require_loralib()
    return [module for module in model.modules() if isinstance(module, lora.LoRALayer)]


def set_merged(layer: Any, merged: bool) -> None:
    """Merge or unmerge one loralib layer through loralib's own code, leaving its train/eval mode as it was."""
    if layer.merged == merged:
        return
    training, merge_weights = layer.training, layer.merge_weights
    layer.merge_weights = True
    layer.train(not merged)  # loralib merges on eval() and unmerges on train()
    layer.merge_weights = False
    layer.train(training)  # restore the mode without touching the weights
    layer.merge_weights = merge_weights


@contextmanager
def merging_disabled(model: Any) -> Iterator[None]:
    """Inside: every layer unmerged and ``merge_weights=False`` (``eval()`` computes B·A on the fly).

    Training and evaluation run inside this, so the pretrained weights stay bit-for-bit what was loaded. On exit
    ``merge_weights`` is restored but nothing is merged: loralib computes unmerged layers correctly in either mode,
    and merges them at the next ``eval()`` call.
    """
    saved = []
    for layer in lora_layers(model):
        saved.append((layer, layer.merge_weights))
        set_merged(layer, False)
        layer.merge_weights = False
    try:
        yield
    finally:
        for layer, merge_weights in saved:
            layer.merge_weights = merge_weights


@contextmanager
def unmerged(model: Any) -> Iterator[None]:
    """Inside: every layer unmerged (to read or replace LoRA weights); merged layers are re-merged on exit."""
    merged = [layer for layer in lora_layers(model) if layer.merged]
    for layer in merged:
        set_merged(layer, False)
    try:
        yield
    finally:
        for layer in merged:
            set_merged(layer, True)
