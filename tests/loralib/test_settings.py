"""lora={"backend": "loralib", ...}: accepted, validated, normalized, and kept apart from the PEFT settings."""

from __future__ import annotations

import pytest

from phi3_lora_hub.config.lora import LORA_DEFAULTS, build_lora_config, resolve_lora
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.loralib_backend.spec import LoralibSpec, is_loralib


def test_loralib_settings_resolve_to_a_spec_with_the_papers_default_slices():
    settings = resolve_lora({"backend": "loralib", "r": 8, "lora_alpha": 16})
    assert is_loralib(settings)
    assert settings == {
        "backend": "loralib",
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        "qkv_slices": ["q", "v"],
        "lora_dropout": LORA_DEFAULTS["lora_dropout"],
        "bias": "none",
        "merge_weights": True,
    }
    spec = LoralibSpec.from_dict(settings)
    assert spec.enable_lora == [True, False, True]
    assert spec.qkv_rank == 16
    assert spec.scaling == 2.0


def test_slices_are_put_in_q_k_v_order_and_all_linear_expands():
    settings = resolve_lora({"backend": "loralib", "qkv_slices": ["v", "k"], "target_modules": "all-linear"})
    assert settings["qkv_slices"] == ["k", "v"]
    assert settings["target_modules"] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert resolve_lora({"backend": "loralib", "qkv_slices": "fused"})["qkv_slices"] == "fused"


def test_resolved_loralib_settings_resolve_to_themselves():
    """The recipe YAML stores the resolved dict; reading it back must give the same settings."""
    once = resolve_lora({"backend": "loralib", "target_modules": ["qkv_proj", "embed_tokens"], "bias": "lora_only"})
    assert resolve_lora(once) == once


def test_peft_settings_are_unchanged_and_never_carry_backend():
    assert resolve_lora({"backend": "peft"}) == resolve_lora(None) == LORA_DEFAULTS
    build_lora_config(resolve_lora({"backend": "peft", "r": 4}))  # peft.LoraConfig accepts every resolved key


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"backend": "lorlib"}, "backend must be one of"),
        ({"backend": "loralib", "qkv_slice": ["q"]}, "Did you mean 'qkv_slices'"),
        ({"backend": "loralib", "use_dora": True}, "PEFT option the loralib backend does not have"),
        ({"backend": "loralib", "modules_to_save": ["lm_head"]}, "PEFT option"),
        ({"backend": "loralib", "qkv_slices": ["q", "x"]}, "each of 'q', 'k', 'v'"),
        ({"backend": "loralib", "qkv_slices": []}, "non-empty list"),
        ({"backend": "loralib", "qkv_slices": "qv"}, "non-empty list"),
        ({"backend": "loralib", "bias": "some"}, "loralib's modes"),
        ({"backend": "loralib", "r": 0}, "positive integer"),
        ({"backend": "loralib", "lora_alpha": -1}, "positive number"),
        ({"backend": "loralib", "target_modules": ".*proj"}, "not a regex"),
        ({"backend": "loralib", "target_modules": ["o_proj"], "qkv_slices": ["q"]}, "does not include 'qkv_proj'"),
        ({"backend": "loralib", "merge_weights": "yes"}, "true or false"),
        ({"backend": "loralib", "task_type": "SEQ_CLS"}, "managed by the recipe"),
        ({"qkv_slices": ["q", "v"]}, "only applies to backend='loralib'"),
        ({"merge_weights": False}, "only applies to backend='loralib'"),
        ({"bakend": "loralib"}, "Did you mean 'backend'"),
    ],
)
def test_bad_settings_name_the_problem(user, message):
    with pytest.raises(ConfigError, match=message):
        resolve_lora(user)


def test_peft_options_at_their_default_are_accepted():
    settings = resolve_lora({"backend": "loralib", "use_dora": False, "modules_to_save": None})
    assert "use_dora" not in settings
    assert "modules_to_save" not in settings


def test_spec_round_trips_through_its_dict():
    spec = LoralibSpec(r=4, lora_alpha=8, target_modules=("qkv_proj", "embed_tokens"), qkv_slices=("k",))
    assert LoralibSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="lacks"):
        LoralibSpec.from_dict({"r": 4})
