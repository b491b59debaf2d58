"""A loralib-patched Phi-3 and its converted PEFT adapter on the unmodified base give the same outputs.

Each case fills the LoRA tensors with random values (a fresh LoRA changes nothing, which would prove nothing),
then compares logits with loralib unmerged and merged (``eval()`` with ``merge_weights``) against PEFT unmerged and
merged (``merge_and_unload``). The largest difference is printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("loralib")

from loralib_helpers import fill_lora, input_ids, logits, random_phi3
from peft import PeftModel

from phi3_lora_hub.loralib_backend.checkpoint import save_adapter
from phi3_lora_hub.loralib_backend.merging import merging_disabled
from phi3_lora_hub.loralib_backend.patching import patch_phi3
from phi3_lora_hub.loralib_backend.spec import LoralibSpec

TOLERANCE = 1e-5  # float32; logits here are of order 1
CASES = {
    "q/v only": LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",), qkv_slices=("q", "v")),
    "q/k/v": LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",), qkv_slices=("q", "k", "v")),
    "k only": LoralibSpec(r=2, lora_alpha=3, target_modules=("qkv_proj",), qkv_slices=("k",)),
    "MLP": LoralibSpec(r=4, lora_alpha=16, target_modules=("gate_up_proj", "down_proj")),
    "all + embedding": LoralibSpec(
        r=4, lora_alpha=8, target_modules=("embed_tokens", "qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    ),
    "fused qkv": LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "o_proj"), qkv_slices="fused"),
}
K_ROWS = slice(48, 96)  # hidden 48: qkv_proj rows are q 0-47, k 48-95, v 96-143


def trained_loralib(spec: LoralibSpec):
    model = random_phi3()
    patch_phi3(model, spec)
    fill_lora(model)
    return model


def peft_on_fresh_base(loralib_model, spec: LoralibSpec, directory):
    save_adapter(loralib_model, spec, directory)
    return PeftModel.from_pretrained(random_phi3(), str(directory)).eval()


@pytest.mark.parametrize("case", list(CASES))
def test_loralib_and_converted_peft_agree_before_and_after_merging(case, tmp_path):
    spec = CASES[case]
    ids = input_ids()
    model = trained_loralib(spec)
    with merging_disabled(model):
        model.eval()
        loralib_unmerged = logits(model, ids)
    model.train()
    model.eval()  # merge_weights=True: loralib adds B·A·scaling into the weights now
    assert all(layer.merged for layer in model.modules() if hasattr(layer, "merged"))
    loralib_merged = logits(model, ids)
    peft = peft_on_fresh_base(model, spec, tmp_path)
    peft_unmerged = logits(peft, ids)
    peft_merged = logits(peft.merge_and_unload(), ids)

    base = logits(random_phi3(), ids)
    assert (loralib_unmerged - base).abs().max() > 1e-2  # the LoRA really changes the output
    differences = {
        f"{a} vs {b}": (x - y).abs().max().item()
        for (a, x), (b, y) in [
            (("loralib", loralib_unmerged), ("peft", peft_unmerged)),
            (("loralib merged", loralib_merged), ("peft", peft_unmerged)),
            (("loralib", loralib_unmerged), ("peft merged", peft_merged)),
            (("loralib merged", loralib_merged), ("peft merged", peft_merged)),
        ]
    }
    print(f"\n{case}: largest |logit difference| " + ", ".join(f"{k}: {v:.3g}" for k, v in differences.items()))
    assert max(differences.values()) < TOLERANCE, differences


def test_k_slice_is_bit_for_bit_unchanged_by_a_q_v_adapter(tmp_path):
    spec = CASES["q/v only"]
    base = random_phi3()
    model = trained_loralib(spec)
    peft = peft_on_fresh_base(model, spec, tmp_path)
    hidden = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(3))
    for index in range(2):
        base_qkv = base.model.layers[index].self_attn.qkv_proj
        with torch.no_grad(), merging_disabled(model):
            expected = base_qkv(hidden)
            outputs = {
                "loralib": model.model.layers[index].self_attn.qkv_proj(hidden),
                "peft": peft.base_model.model.model.layers[index].self_attn.qkv_proj(hidden),
            }
        for name, output in outputs.items():
            assert torch.equal(output[..., K_ROWS], expected[..., K_ROWS]), name
            assert not torch.allclose(output[..., :48], expected[..., :48]), name  # q is adapted
    model.eval()  # loralib merge
    merged_peft = peft.merge_and_unload()
    for index in range(2):
        original = base.model.layers[index].self_attn.qkv_proj.weight
        for weight in (
            model.model.layers[index].self_attn.qkv_proj.weight,
            merged_peft.model.layers[index].self_attn.qkv_proj.weight,
        ):
            assert torch.equal(weight[K_ROWS], original[K_ROWS])
            assert not torch.equal(weight[96:], original[96:])  # v is adapted


def test_converted_adapter_uses_block_structure_with_equal_scaling(tmp_path):
    spec = CASES["q/v only"]
    model = trained_loralib(spec)
    peft = peft_on_fresh_base(model, spec, tmp_path)
    layer = peft.base_model.model.model.layers[0].self_attn.qkv_proj
    assert layer.r["default"] == 8 and layer.scaling["default"] == spec.scaling
    lora_b = layer.lora_B["default"].weight
    assert not lora_b[K_ROWS].any()  # no k rows
    assert not lora_b[:48, 4:].any() and not lora_b[96:, :4].any()  # q uses A's first r rows, v the next r
    source = model.model.layers[0].self_attn.qkv_proj
    assert torch.equal(lora_b[:48, :4], source.lora_B[:48]) and torch.equal(lora_b[96:, 4:], source.lora_B[48:])
    assert torch.equal(layer.lora_A["default"].weight, source.lora_A)
