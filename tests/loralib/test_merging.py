"""merging_disabled / unmerged: loralib's merge-on-eval never moves the pretrained weights where it matters."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("loralib")

from loralib_helpers import fill_lora, input_ids, logits, random_phi3

from phi3_lora_hub.loralib_backend.merging import lora_layers, merging_disabled, unmerged
from phi3_lora_hub.loralib_backend.patching import patch_phi3
from phi3_lora_hub.loralib_backend.spec import LoralibSpec

SPEC = LoralibSpec(r=4, lora_alpha=8, target_modules=("embed_tokens", "qkv_proj", "o_proj", "gate_up_proj"))


def trained_in_train_mode():
    model = random_phi3()
    patch_phi3(model, SPEC)
    model.train()
    fill_lora(model)
    return model


def frozen_weights(model):
    return {key: value.clone() for key, value in model.state_dict().items() if "lora_" not in key}


def test_eval_train_switches_inside_merging_disabled_keep_weights_bit_for_bit():
    model = trained_in_train_mode()
    before = frozen_weights(model)
    ids = input_ids()
    with merging_disabled(model):
        for _ in range(3):  # what the Trainer does around each evaluation
            model.eval()
            assert not any(layer.merged for layer in lora_layers(model))
            unmerged_eval = logits(model, ids)
            model.train()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in before.items())
    assert all(layer.merge_weights for layer in lora_layers(model))  # restored on exit
    model.eval()  # loralib merges at the next eval(), as usual
    assert all(layer.merged for layer in lora_layers(model))
    assert (logits(model, ids) - unmerged_eval).abs().max() < 1e-5


def test_unmerged_restores_the_merge_of_merged_layers():
    model = trained_in_train_mode()
    model.eval()
    with unmerged(model):
        assert not any(layer.merged for layer in lora_layers(model))
        assert not any(layer.training for layer in lora_layers(model))  # the mode is left alone
    assert all(layer.merged for layer in lora_layers(model))
