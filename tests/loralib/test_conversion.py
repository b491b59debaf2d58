"""Round trips between PEFT and loralib are exact; what loralib cannot express is refused with a clear error."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

pytest.importorskip("loralib")

from loralib_helpers import fill_lora, input_ids, logits, random_phi3
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

from phi3_lora_hub.loralib_backend.checkpoint import (
    LoralibRecord,
    convert_loralib_dir,
    convert_peft_dir,
    lora_state_dict,
    read_loralib_checkpoint,
    read_loralib_record,
    read_peft_adapter,
    save_loralib_checkpoint,
)
from phi3_lora_hub.loralib_backend.conversion import loralib_to_peft, peft_to_loralib
from phi3_lora_hub.loralib_backend.errors import NotRepresentableError
from phi3_lora_hub.loralib_backend.loading import load_loralib_checkpoint
from phi3_lora_hub.loralib_backend.patching import patch_phi3
from phi3_lora_hub.loralib_backend.spec import LoralibSpec
from phi3_lora_hub.run_file_names import LORALIB_CONFIG

COMPARED_CONFIG = ("r", "lora_alpha", "rank_pattern", "alpha_pattern", "lora_dropout", "bias", "use_rslora")


def peft_adapter(tmp_path, **config):
    """A PEFT adapter trained-looking (random A and B) on the random Phi-3, saved as PEFT saves it."""
    model = get_peft_model(random_phi3(), LoraConfig(task_type="CAUSAL_LM", **config))
    fill_lora(model)
    model.save_pretrained(str(tmp_path / "peft"))
    return tmp_path / "peft", model


def assert_same_adapter(first, second):
    state_a, config_a = first
    state_b, config_b = second
    assert set(state_a) == set(state_b)
    for key in state_a:
        assert state_a[key].dtype == state_b[key].dtype and torch.equal(state_a[key], state_b[key]), key
    assert set(config_a.target_modules) == set(config_b.target_modules)
    for name in COMPARED_CONFIG:
        assert getattr(config_a, name) == getattr(config_b, name), name


def test_plain_peft_adapter_round_trips_exactly_through_loralib(tmp_path):
    source, _ = peft_adapter(
        tmp_path, r=4, lora_alpha=8, target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    )
    convert_peft_dir(source, tmp_path / "loralib")
    record = read_loralib_record(tmp_path / "loralib")
    assert record.spec.qkv_slices == "fused" and record.spec.r == 4 and record.spec.lora_alpha == 8
    convert_loralib_dir(tmp_path / "loralib", tmp_path / "back")
    assert_same_adapter(read_peft_adapter(source), read_peft_adapter(tmp_path / "back"))


def test_q_v_peft_adapter_round_trips_exactly_through_merged_linear(tmp_path):
    model = random_phi3()
    spec = LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "down_proj"), qkv_slices=("q", "v"))
    patch_phi3(model, spec)
    fill_lora(model)
    adapter = loralib_to_peft(lora_state_dict(model), spec)
    peft_first = (adapter.state_dict, adapter.lora_config())
    loralib_state, back_spec = peft_to_loralib(*peft_first, qkv_slices=["q", "v"])
    assert back_spec.qkv_slices == ("q", "v") and back_spec.r == 4 and back_spec.lora_alpha == 8
    assert tuple(loralib_state["model.layers.0.self_attn.qkv_proj.lora_A"].shape) == (8, 48)
    again = loralib_to_peft(loralib_state, back_spec)
    assert_same_adapter(peft_first, (again.state_dict, again.lora_config()))
    # and loralib -> PEFT -> loralib gives back the very tensors the model holds
    original = lora_state_dict(model)
    assert set(loralib_state) == set(original)
    assert all(torch.equal(loralib_state[key], original[key]) for key in original)


def test_recorded_slices_are_used_when_converting_back(tmp_path):
    model = random_phi3()
    spec = LoralibSpec(r=2, lora_alpha=4, target_modules=("qkv_proj",), qkv_slices=("k",))
    patch_phi3(model, spec)
    fill_lora(model)
    save_loralib_checkpoint(lora_state_dict(model), LoralibRecord(spec, "base/model"), tmp_path / "ckpt")
    convert_loralib_dir(tmp_path / "ckpt", tmp_path / "peft")
    assert json.loads((tmp_path / "peft" / LORALIB_CONFIG).read_text())["qkv_slices"] == ["k"]
    with safe_open(str(tmp_path / "peft" / "adapter_model.safetensors"), "pt") as weights:
        recorded = json.loads(weights.metadata()["loralib"])  # travels with the weights file too
    assert recorded["trained_with"] == "loralib" and recorded["qkv_slices"] == ["k"] and recorded["lora_alpha"] == 4
    assert read_peft_adapter(tmp_path / "peft")[1].base_model_name_or_path == "base/model"
    convert_peft_dir(tmp_path / "peft", tmp_path / "again")
    state, record = read_loralib_checkpoint(tmp_path / "again")
    assert record.spec == spec
    original = lora_state_dict(model)
    assert all(torch.equal(state[key], original[key]) for key in original)


def test_rslora_adapter_converts_with_the_same_scaling(tmp_path):
    source, peft_model = peft_adapter(tmp_path, r=4, lora_alpha=4, use_rslora=True, target_modules=["o_proj"])
    convert_peft_dir(source, tmp_path / "loralib")
    spec = read_loralib_record(tmp_path / "loralib").spec
    assert spec.scaling == 4 / 4**0.5
    model = random_phi3()
    load_loralib_checkpoint(model, tmp_path / "loralib")
    ids = input_ids()
    assert (logits(model, ids) - logits(peft_model.eval(), ids)).abs().max() < 1e-5


def test_dense_qkv_lora_cannot_be_split_into_slices(tmp_path):
    source, _ = peft_adapter(tmp_path, r=4, lora_alpha=8, target_modules=["qkv_proj"])
    with pytest.raises(NotRepresentableError, match=r"not zero outside the \['q', 'v'\] blocks.*qkv_slices='fused'"):
        convert_peft_dir(source, tmp_path / "loralib", qkv_slices=["q", "v"])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"use_dora": True}, "use_dora"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"rank_pattern": {"o_proj": 2}}, "share one r"),
        ({"alpha_pattern": {"down_proj": 2}}, "share one r"),
        ({"layers_to_transform": [0]}, "layers_to_transform"),
    ],
)
def test_features_loralib_lacks_are_refused(tmp_path, config, message):
    source, _ = peft_adapter(tmp_path, r=4, lora_alpha=8, target_modules=["o_proj", "down_proj"], **config)
    with pytest.raises(NotRepresentableError, match=message):
        convert_peft_dir(source, tmp_path / "loralib")


def test_loralib_state_dict_that_contradicts_the_spec_is_refused():
    model = random_phi3()
    patch_phi3(model, LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",), qkv_slices=("q", "k", "v")))
    state = lora_state_dict(model)
    with pytest.raises(NotRepresentableError, match="lora_A needs 8 rows"):
        loralib_to_peft(state, LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",), qkv_slices=("q", "v")))
    with pytest.raises(NotRepresentableError, match="targets only"):
        loralib_to_peft(state, LoralibSpec(r=4, lora_alpha=8, target_modules=("o_proj",)))
    with pytest.raises(NotRepresentableError, match="not a LoRA tensor"):
        loralib_to_peft({**state, "model.norm.weight": torch.ones(48)}, LoralibSpec(r=4, lora_alpha=8))


def test_state_dict_of_a_patched_inner_model_converts_too():
    model = random_phi3()
    spec = LoralibSpec(r=4, lora_alpha=8, target_modules=("o_proj",))
    patch_phi3(model, spec)
    inner = {key: value for key, value in model.model.state_dict().items() if "lora_" in key}
    assert next(iter(inner)).startswith("layers.")
    adapter = loralib_to_peft(inner, spec)
    assert set(adapter.state_dict) == {
        f"base_model.model.model.layers.{i}.self_attn.o_proj.lora_{m}.weight" for i in range(2) for m in "AB"
    }


def test_converted_keys_are_exactly_what_peft_itself_saves(tmp_path):
    targets = ["embed_tokens", "qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    model = random_phi3()
    spec = LoralibSpec(r=4, lora_alpha=8, target_modules=tuple(targets))
    patch_phi3(model, spec)
    adapter = loralib_to_peft(lora_state_dict(model), spec)
    reference = get_peft_model(random_phi3(), adapter.lora_config())
    expected = {k: v.shape for k, v in get_peft_model_state_dict(reference).items() if "base_layer" not in k}
    assert {k: v.shape for k, v in adapter.state_dict.items()} == expected
    loaded = PeftModel.from_pretrained(random_phi3(), str(_write(adapter, tmp_path)))
    assert loaded.peft_config["default"].target_modules == set(targets)


def _write(adapter, directory):
    from phi3_lora_hub.loralib_backend.checkpoint import write_peft_adapter

    return write_peft_adapter(adapter, directory)


def test_a_checkpoint_directory_converts_in_place_for_a_push(tmp_path):
    model = random_phi3()
    spec = LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj",))
    patch_phi3(model, spec)
    fill_lora(model)
    save_loralib_checkpoint(lora_state_dict(model), LoralibRecord(spec), tmp_path)
    convert_loralib_dir(tmp_path, base_model_name_or_path="me/phi3-base", revision="abc123")
    _, config = read_peft_adapter(tmp_path)
    assert (config.base_model_name_or_path, config.revision) == ("me/phi3-base", "abc123")
    assert read_loralib_record(tmp_path).base_model_name_or_path == "me/phi3-base"
    peft = PeftModel.from_pretrained(random_phi3(), str(tmp_path)).eval()
    ids = input_ids()
    assert (logits(peft, ids) - logits(model.eval(), ids)).abs().max() < 1e-5
