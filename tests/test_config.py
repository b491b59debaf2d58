"""Configuration: defaults, merging, validation of training/lora keys, YAML round trip and overrides."""

from __future__ import annotations

import pytest

from phi3_lora_hub import ConfigError, Phi3LoraRecipe
from phi3_lora_hub.config.lora import LORA_DEFAULTS, resolve_lora
from phi3_lora_hub.config.recipe_config import apply_override
from phi3_lora_hub.config.training import resolve_training
from phi3_lora_hub.data.sample import sample_conversations
from phi3_lora_hub.hardware import Hardware
from phi3_lora_hub.model.targets import PHI3_TARGET_MODULES

CPU = Hardware(cuda=False, bf16=False, flash_attention=False, device_name="cpu")
GPU = Hardware(cuda=True, bf16=True, flash_attention=True, device_name="H100")


def test_training_defaults_follow_the_hardware():
    cpu, gpu = resolve_training(None, CPU), resolve_training(None, GPU)
    assert (cpu["bf16"], cpu["use_cpu"], cpu["activation_checkpointing"]) == (False, True, False)
    assert (gpu["bf16"], gpu["use_cpu"], gpu["activation_checkpointing"]) == (True, False, True)
    assert gpu["activation_checkpointing_kwargs"] == {"use_reentrant": False}
    assert cpu["learning_rate"] == 1e-4 and cpu["lr_scheduler_type"] == "cosine"
    assert GPU.attn_implementation == "flash_attention_2" and CPU.attn_implementation == "sdpa"


def test_a_gpu_with_room_for_the_activations_trains_without_checkpointing_and_a_smaller_one_keeps_it():
    h200 = Hardware(cuda=True, bf16=True, flash_attention=False, device_name="H200", gpu_memory_bytes=143 * 2**30)
    l4 = Hardware(cuda=True, bf16=True, flash_attention=False, device_name="L4", gpu_memory_bytes=22 * 2**30)
    assert resolve_training(None, h200)["activation_checkpointing"] is False
    assert resolve_training(None, l4)["activation_checkpointing"] is True
    # the estimate grows with the micro-batch (batch x max_length tokens), and the user's choice always wins
    assert resolve_training({"per_device_train_batch_size": 16}, h200)["activation_checkpointing"] is True
    assert resolve_training({"activation_checkpointing": True}, h200)["activation_checkpointing"] is True


def test_user_training_values_override_defaults_and_numbers_are_coerced():
    merged = resolve_training({"learning_rate": "2e-4", "max_steps": "10", "logging_steps": 1}, CPU)
    assert merged["learning_rate"] == pytest.approx(2e-4)
    assert merged["max_steps"] == 10 and isinstance(merged["max_steps"], int)
    assert merged["logging_steps"] == 1


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("learning_rte", "learning_rate"),
        ("per_device_train_batchsize", "per_device_train_batch_size"),
        ("max_seq_length", "max_length"),
        ("warmup_ratio", "warmup_steps"),
        ("nonsense_key_xyz", None),
    ],
)
def test_unknown_training_key_is_named_with_the_closest_valid_one(key, suggestion):
    with pytest.raises(ConfigError) as caught:
        resolve_training({key: 1}, CPU)
    message = str(caught.value)
    assert f"Unknown training key {key!r}" in message
    if suggestion:
        assert f"Did you mean {suggestion!r}" in message


@pytest.mark.parametrize(
    "key", ["hub_token", "push_to_hub", "output_dir", "gradient_checkpointing", "trust_remote_code"]
)
def test_keys_the_recipe_manages_are_refused_with_a_hint(key):
    with pytest.raises(ConfigError, match=f"training key '{key}' is managed by the recipe"):
        resolve_training({key: True}, CPU)


def test_bf16_on_a_machine_without_it_is_refused():
    with pytest.raises(ConfigError, match="no native bfloat16"):
        resolve_training({"bf16": True}, CPU)


def test_lora_defaults_target_every_fused_phi3_linear():
    merged = resolve_lora({"r": 8})
    assert merged["r"] == 8 and merged["lora_alpha"] == LORA_DEFAULTS["lora_alpha"]
    assert merged["target_modules"] == list(PHI3_TARGET_MODULES)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("training", "max_steps", "ten", "training.max_steps must be int (see trl.SFTConfig), got 'ten' (str)."),
        ("training", "learning_rate", "fast", "training.learning_rate must be float"),
        ("training", "bf16", "yes", "training.bf16 must be bool or null"),
        ("training", "max_length", 1.5, "training.max_length must be int or null"),
        ("training", "lr_scheduler_type", "cosin", "got 'cosin' (str). Did you mean 'cosine'?"),
        ("training", "eval_strategy", "sometimes", "training.eval_strategy must be one of 'no', 'steps', 'epoch'"),
        ("training", "logging_steps", True, "training.logging_steps must be float"),
        ("lora", "r", "eight", "lora.r must be int (see peft.LoraConfig), got 'eight' (str)."),
        ("lora", "lora_dropout", "high", "lora.lora_dropout must be float"),
        ("lora", "bias", "nne", "Did you mean 'none'?"),
        ("lora", "target_modules", 5, "lora.target_modules must be list or str or null"),
        ("evaluation", "max_new_tokens", "many", "evaluation.max_new_tokens must be int"),
    ],
)
def test_every_value_is_type_checked_when_the_recipe_is_built(section, key, value, expected):
    """Before any model, tokenizer or data is loaded (the model id and dataset do not exist)."""
    with pytest.raises(ConfigError) as caught:
        Phi3LoraRecipe("no/such-model", "missing.jsonl", **{section: {key: value}})
    assert expected in str(caught.value)


def test_set_with_a_wrong_type_is_a_config_error_naming_the_field(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: m\ndataset: d.jsonl\n")
    with pytest.raises(ConfigError, match=r"training.max_steps must be int .*got 'ten'"):
        Phi3LoraRecipe.from_yaml(path, ["training.max_steps=ten"])
    recipe = Phi3LoraRecipe.from_yaml(path, ["lora.lora_dropout=5e-2", "training.warmup_steps=1e-1"])
    assert recipe.config.lora["lora_dropout"] == 0.05 and recipe.config.training["warmup_steps"] == 0.1


def test_peft_rejects_bad_combinations_when_the_recipe_is_built():
    with pytest.raises(ConfigError, match="rejected by peft.LoraConfig"):
        resolve_lora({"layers_pattern": "layers"})  # PEFT: layers_pattern needs layers_to_transform


def test_unknown_lora_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match="Unknown lora key 'lora_alpah'. Did you mean 'lora_alpha'"):
        resolve_lora({"lora_alpah": 16})
    with pytest.raises(ConfigError, match="lora key 'task_type' is managed"):
        resolve_lora({"task_type": "SEQ_CLS"})
    with pytest.raises(ConfigError, match="positive integer"):
        resolve_lora({"r": 0})


def test_unknown_recipe_setting_is_named():
    with pytest.raises(ConfigError, match="Unknown recipe key 'outptu_dir'. Did you mean 'output_dir'"):
        Phi3LoraRecipe("unused", [], outptu_dir="x")


def test_yaml_round_trip_gives_the_same_resolved_config(tmp_path, tiny_model_dir):
    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        str(tmp_path / "data.jsonl"),
        output_dir=str(tmp_path / "out"),
        eval_size=0.1,
        role_map={"bot2": "assistant"},
        training={"max_steps": 5, "learning_rate": 3e-3},
        lora={"r": 4, "target_modules": ["qkv_proj", "o_proj"]},
    )
    path = tmp_path / "recipe.yaml"
    recipe.to_yaml(path)
    again = Phi3LoraRecipe.from_yaml(path)
    assert again.config == recipe.config
    assert again.to_yaml() == path.read_text()


def test_from_yaml_applies_overrides_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: m\ndataset: d.jsonl\ntraining:\n  max_steps: 3\n")
    recipe = Phi3LoraRecipe.from_yaml(path, ["training.max_steps=7", "lora.r=4", "output_dir=o"])
    assert recipe.config.training["max_steps"] == 7
    assert recipe.config.lora["r"] == 4 and recipe.config.output_dir == "o"
    path.write_text("model: m\ndatset: d.jsonl\n")
    with pytest.raises(ConfigError, match="Unknown recipe key 'datset'. Did you mean 'dataset'"):
        Phi3LoraRecipe.from_yaml(path)


def test_override_syntax_errors_are_clear():
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "training.max_steps")
    with pytest.raises(ConfigError, match="Unknown recipe key 'trainng'"):
        apply_override({}, "trainng.max_steps=3")


def test_recipe_accepts_in_memory_data_and_records_no_path():
    recipe = Phi3LoraRecipe("some/model", sample_conversations(3))
    assert recipe.config.dataset is None
    assert recipe.config.model == "some/model"


def test_recipe_settings_are_type_checked_too():
    with pytest.raises(ConfigError, match=r"^max_train_samples must be int or null \(see phi3_lora_hub.config.rec"):
        Phi3LoraRecipe("no/such-model", [], max_train_samples="ten")
    with pytest.raises(ConfigError, match=r"role_map must be dict or null .*got \['observation'\] \(list\)"):
        Phi3LoraRecipe("no/such-model", [], role_map=["observation"])
    assert Phi3LoraRecipe("no/such-model", [], eval_size="1e-1").config.eval_size == 0.1  # YAML 1.1's string


def test_a_large_gpu_trains_the_global_batch_in_the_largest_micro_batches_its_memory_holds():
    # run 1 on the lent H200 (issue 16): 4 rows x 4 steps of accumulation left most of its 139 GiB unused
    def gpu(memory_gib: int, liger: bool) -> Hardware:
        return Hardware(True, True, False, "GPU", gpu_memory_bytes=memory_gib * 2**30, liger=liger)

    def split(user, hardware):
        training = resolve_training(user, hardware)
        return training["per_device_train_batch_size"], training["gradient_accumulation_steps"]

    assert split(None, gpu(140, liger=True)) == (8, 2)  # 8 x 2048 tokens x ~5 MiB: fits, 16 rows would not
    assert split(None, gpu(140, liger=False)) == (4, 4)  # without Liger's kernels 8 rows would not fit
    assert split(None, gpu(22, liger=True)) == (4, 4)  # nothing larger fits: the defaults, with checkpointing
    assert split({"max_length": 512}, gpu(140, liger=True)) == (16, 1)
    assert split({"per_device_train_batch_size": 2}, gpu(140, liger=True)) == (2, 4)  # the user's choice wins
    assert split({"gradient_accumulation_steps": 8}, gpu(140, liger=True)) == (4, 8)
    assert split(None, CPU) == (4, 4)
