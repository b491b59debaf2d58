"""Loading a loralib checkpoint the README way (pretrained, then LoRA) reports every key that does not fit."""

from __future__ import annotations

import logging

import pytest
import torch

pytest.importorskip("loralib")

from loralib_helpers import fill_lora, input_ids, logits, random_phi3

from phi3_lora_hub.loralib_backend.checkpoint import lora_state_dict, save_adapter
from phi3_lora_hub.loralib_backend.errors import LoraKeyMismatchError
from phi3_lora_hub.loralib_backend.loading import (
    check_lora_state_dict,
    load_lora_state_dict,
    load_loralib_checkpoint,
)
from phi3_lora_hub.loralib_backend.patching import patch_phi3
from phi3_lora_hub.loralib_backend.spec import LoralibSpec

SPEC = LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "o_proj"), qkv_slices=("q", "v"))
QKV_A = "model.layers.1.self_attn.qkv_proj.lora_A"


def trained(spec=SPEC):
    model = random_phi3()
    patch_phi3(model, spec)
    fill_lora(model)
    return model


def patched(spec=SPEC):
    model = random_phi3()
    patch_phi3(model, spec)
    return model


def lora_tensors(model):
    return {key: value for key, value in model.state_dict().items() if "lora_" in key}


def test_a_fitting_state_dict_loads_every_tensor():
    source, target = trained(), patched()
    report = load_lora_state_dict(target, lora_state_dict(source))
    assert report.ok and len(report.loaded) == 8
    assert all(torch.equal(lora_tensors(target)[k], v) for k, v in lora_tensors(source).items())


def test_missing_lora_keys_are_reported_and_nothing_is_loaded():
    source, target = trained(), patched()
    before = {k: v.clone() for k, v in lora_tensors(target).items()}
    state = lora_state_dict(source)
    del state[QKV_A]
    with pytest.raises(LoraKeyMismatchError, match="1 LoRA tensors of the model are missing") as error:
        load_lora_state_dict(target, state)
    assert error.value.report.missing == (QKV_A,)
    assert all(torch.equal(lora_tensors(target)[k], v) for k, v in before.items())  # strict: all or nothing


def test_unexpected_keys_are_reported():
    state = lora_state_dict(trained(LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "o_proj", "down_proj"))))
    report = check_lora_state_dict(patched(), state)
    assert set(report.unexpected) == {f"model.layers.{i}.mlp.down_proj.lora_{m}" for i in range(2) for m in "AB"}
    assert not report.missing and not report.mismatched
    with pytest.raises(LoraKeyMismatchError, match="4 tensors are not in the model"):
        load_lora_state_dict(patched(), state)


def test_other_slices_or_rank_are_reported_as_shape_mismatches():
    state = lora_state_dict(trained(LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "o_proj"))))
    target = patched(LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "o_proj"), qkv_slices=("q", "k", "v")))
    report = check_lora_state_dict(target, state)
    assert (QKV_A, (8, 48), (12, 48)) in report.mismatched
    assert "qkv_slices" in report.describe()


def test_non_strict_loading_loads_what_fits_and_warns(caplog):
    source, target = trained(), patched()
    state = lora_state_dict(source)
    state["model.layers.0.mlp.down_proj.lora_A"] = torch.zeros(4, 96)
    del state[QKV_A]
    with caplog.at_level(logging.WARNING):
        report = load_lora_state_dict(target, state, strict=False)
    assert report.missing == (QKV_A,) and report.unexpected == ("model.layers.0.mlp.down_proj.lora_A",)
    assert "Loading the LoRA state dict partially" in caplog.text and QKV_A in caplog.text
    o_proj = "model.layers.0.self_attn.o_proj.lora_B"
    assert torch.equal(lora_tensors(target)[o_proj], lora_tensors(source)[o_proj])


def test_keys_of_a_patched_inner_model_are_aligned():
    source, target = trained(), patched()
    inner = {key.removeprefix("model."): value for key, value in lora_state_dict(source).items()}
    report = load_lora_state_dict(target, inner)
    assert report.ok and report.prefix_fix == "added 'model.'"


def test_loading_into_a_merged_model_keeps_loralibs_merge_consistent():
    """In eval() loralib has merged the old update; loading must not leave it to subtract the new one later."""
    source, target = trained(), patched()
    ids = input_ids()
    target.eval()
    assert target.model.layers[0].self_attn.qkv_proj.merged
    load_lora_state_dict(target, lora_state_dict(source))
    source.eval()
    assert (logits(target, ids) - logits(source, ids)).abs().max() < 1e-5
    target.train()  # unmerges the update that was merged: weights back to the pretrained ones
    original = random_phi3().state_dict()
    for key, value in target.state_dict().items():
        if "lora_" not in key:
            assert torch.allclose(value, original[key], atol=1e-6), key


def test_checkpoint_directory_patches_and_loads_a_fresh_base(tmp_path):
    source = trained()
    save_adapter(source, SPEC, tmp_path)
    fresh = random_phi3()
    report = load_loralib_checkpoint(fresh, tmp_path)
    assert report.ok
    ids = input_ids()
    assert (logits(fresh, ids) - logits(source.eval(), ids)).abs().max() < 1e-5


def test_a_torch_save_checkpoint_needs_and_uses_a_spec(tmp_path):
    from phi3_lora_hub.errors import ConfigError

    source = trained()
    torch.save(lora_state_dict(source), tmp_path / "ckpt_lora.pt")
    with pytest.raises(ConfigError, match="pass spec=LoralibSpec"):
        load_loralib_checkpoint(random_phi3(), tmp_path)
    assert load_loralib_checkpoint(random_phi3(), tmp_path, spec=SPEC).ok
