"""patch_phi3: loralib layers in the right places, only LoRA trainable, outputs unchanged until trained."""

from __future__ import annotations

import sys

import pytest
import torch

from phi3_lora_hub.errors import ConfigError, ModelError
from phi3_lora_hub.loralib_backend.spec import LoralibSpec

lora = pytest.importorskip("loralib")

from loralib_helpers import input_ids, logits, random_phi3  # noqa: E402

from phi3_lora_hub.loralib_backend.patching import patch_phi3  # noqa: E402

ALL = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "embed_tokens")


def test_layers_are_replaced_by_their_loralib_counterparts():
    model = random_phi3()
    qkv_weight = model.model.layers[0].self_attn.qkv_proj.weight
    names = patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=ALL, qkv_slices=("q", "v")))
    assert len(names) == 1 + 2 * 4
    attention = model.model.layers[0].self_attn
    assert type(attention.qkv_proj) is lora.MergedLinear
    assert attention.qkv_proj.enable_lora == [True, False, True]
    assert attention.qkv_proj.weight is qkv_weight  # the pretrained tensor moved in, not a copy
    assert tuple(attention.qkv_proj.lora_A.shape) == (8, 48)  # r rows per adapted slice
    assert tuple(attention.qkv_proj.lora_B.shape) == (96, 4)  # two slices of 48 rows
    assert type(attention.o_proj) is lora.Linear
    assert type(model.model.layers[1].mlp.gate_up_proj) is lora.Linear
    assert type(model.model.embed_tokens) is lora.Embedding
    assert model.model.embed_tokens.padding_idx == 0
    assert type(model.lm_head) is torch.nn.Linear


def test_fused_qkv_is_one_linear():
    model = random_phi3()
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",), qkv_slices="fused"))
    qkv = model.model.layers[0].self_attn.qkv_proj
    assert type(qkv) is lora.Linear
    assert tuple(qkv.lora_B.shape) == (144, 4)


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_only_lora_parameters_train_in_every_bias_mode(bias):
    model = random_phi3()
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=ALL, bias=bias))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    # Phi-3 has no bias anywhere, so every mode trains exactly the LoRA tensors: 2 per patched module.
    assert trainable == {name for name, _ in model.named_parameters() if "lora_" in name}
    assert len(trainable) == 2 * (1 + 2 * 4)


def test_a_fresh_patch_changes_no_output_and_no_weight():
    reference, model = random_phi3(), random_phi3()
    ids = input_ids()
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=ALL))
    assert not model.model.layers[0].self_attn.qkv_proj.training  # follows the model's eval() mode
    assert torch.equal(logits(model, ids), logits(reference, ids))
    model.train()  # unmerges the (zero) update
    for name, weight in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], weight), name


def test_lora_parameters_take_the_base_weights_dtype():
    model = random_phi3(dtype=torch.bfloat16)
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=ALL))
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.bfloat16}
    model(input_ids=input_ids())  # loralib does not cast inputs, so mixed dtypes would fail here


def test_linear_lora_init_follows_loralib():
    model = random_phi3()
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=("o_proj", "embed_tokens")))
    o_proj, embed = model.model.layers[0].self_attn.o_proj, model.model.embed_tokens
    bound = 1 / 48**0.5  # Kaiming uniform with a=sqrt(5) on fan_in 48, as nn.Linear and loralib do
    assert o_proj.lora_A.abs().max() <= bound and o_proj.lora_A.abs().max() > bound / 2
    assert not o_proj.lora_B.any()
    assert not embed.lora_A.any() and embed.lora_B.std() > 0.5  # Embedding: A = 0, B ~ N(0, 1)


def test_grouped_query_attention_cannot_be_sliced():
    with pytest.raises(ModelError, match=r"grouped-query attention.*qkv_slices='fused'"):
        patch_phi3(random_phi3(kv_heads=2), LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",)))
    model = random_phi3(kv_heads=2)
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",), qkv_slices="fused"))


def test_bad_targets_and_double_patching_are_refused():
    with pytest.raises(ModelError, match="'q_proj' matches no module"):
        patch_phi3(random_phi3(), LoralibSpec(r=4, lora_alpha=8, target_modules=("q_proj",)))
    with pytest.raises(ModelError, match="RMSNorm"):
        patch_phi3(random_phi3(), LoralibSpec(r=4, lora_alpha=8, target_modules=("input_layernorm",)))
    model = random_phi3()
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8))
    with pytest.raises(ModelError, match="already holds loralib layers"):
        patch_phi3(model, LoralibSpec(r=4, lora_alpha=8))


def test_missing_loralib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "loralib", None)  # makes `import loralib` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'phi3-lora-hub\[loralib\]'"):
        patch_phi3(random_phi3(), LoralibSpec(r=4, lora_alpha=8))


def test_a_loralib_patch_with_a_seed_ignores_the_global_rng():
    spec = LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "o_proj", "embed_tokens"), qkv_slices=("q", "v"))
    weights = []
    for noise in (1, 5):
        model = random_phi3()
        torch.manual_seed(noise)
        patch_phi3(model, spec, seed=42)
        weights.append({name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(tensor, weights[1][name]) for name, tensor in weights[0].items())
    assert any(tensor.abs().sum() > 0 for tensor in weights[0].values())
