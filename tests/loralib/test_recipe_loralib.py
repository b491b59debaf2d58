"""End to end: a loralib q/v-only run of the recipe on the tiny Phi-3 trains, checkpoints and yields a PEFT adapter."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("loralib")

from safetensors.torch import load_file

from phi3_lora_hub import Phi3LoraRecipe
from phi3_lora_hub.data.sample import sample_conversations
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.loralib_backend.checkpoint import (
    LORALIB_WEIGHTS_NAME,
    read_loralib_record,
)
from phi3_lora_hub.loralib_backend.merging import merging_disabled

TRAINING = {
    "max_steps": 20,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 3e-3,
    "save_steps": 10,
    "logging_steps": 5,
    "disable_tqdm": True,
}
LORA = {"backend": "loralib", "target_modules": ["qkv_proj"], "qkv_slices": ["q", "v"], "r": 8, "lora_alpha": 16}
PEFT_FILES = {"adapter_model.safetensors", "adapter_config.json"}
LORALIB_FILES = {LORALIB_WEIGHTS_NAME, "loralib_config.json"}


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    """One q/v-only loralib training run (20 steps, evaluated every 10) shared by the tests below."""
    output = tmp_path_factory.mktemp("loralib-run")
    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(96),
        output_dir=str(output),
        eval_size=16,
        training=TRAINING,
        lora=LORA,
    )
    return recipe, recipe.train()


def token_batch(tokenizer) -> torch.Tensor:
    text = "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n"
    return tokenizer([text, text.replace("France", "Peru")], return_tensors="pt", add_special_tokens=False).input_ids


def test_the_run_trains_only_the_q_and_v_slices(run):
    recipe, result = run
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert result.global_step == 20 and losses[-1] < losses[0]
    qkv = recipe.trainer.model.model.layers[0].self_attn.qkv_proj
    assert qkv.enable_lora == [True, False, True] and qkv.lora_B.abs().max() > 0
    peft_b = load_file(str(result.adapter_dir / "adapter_model.safetensors"))[
        "base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight"
    ]
    hidden = qkv.in_features
    assert peft_b.shape == (3 * hidden, 16) and not peft_b[hidden : 2 * hidden].any()


def test_evaluation_during_training_leaves_the_pretrained_weights_bit_for_bit(run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    recipe, result = run
    assert any("eval_loss" in entry for entry in result.log_history)  # the Trainer did switch to eval() and back
    pretrained = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).state_dict()
    trained = recipe.trainer.model.state_dict()
    for key, value in pretrained.items():
        assert torch.equal(trained[key], value), key


def test_the_adapter_directory_is_a_plain_peft_adapter_with_the_same_outputs(run, tiny_model_dir):
    from phi3_lora_hub.model.loading import load_for_inference

    recipe, result = run
    assert {path.name for path in result.adapter_dir.iterdir()} >= PEFT_FILES | LORALIB_FILES
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    assert config["rank_pattern"] == {"qkv_proj": 16} and config["alpha_pattern"] == {"qkv_proj": 32}
    peft_model, tokenizer = load_for_inference(str(tiny_model_dir), result.adapter_dir)
    ids = token_batch(tokenizer)
    model = recipe.trainer.model
    with torch.no_grad(), merging_disabled(model):
        model.eval()
        expected = model(input_ids=ids).logits
        actual = peft_model(input_ids=ids).logits
    difference = (expected - actual).abs().max().item()
    scale = expected.abs().max().item()
    print(f"\ntrained q/v run: largest |logit difference| vs PEFT adapter: {difference:.3g} (|logit| ≤ {scale:.3g})")
    assert difference < 1e-5 * max(1.0, scale)  # float32 rounding of a different summation order, nothing more


def test_every_checkpoint_holds_the_loralib_state_dict_and_the_peft_adapter(run):
    _, result = run
    assert [path.name for path in result.checkpoints] == ["checkpoint-10", "checkpoint-20"]
    for checkpoint in result.checkpoints:
        names = {path.name for path in checkpoint.iterdir()}
        assert PEFT_FILES | LORALIB_FILES | {"trainer_state.json", "optimizer.pt"} <= names
        assert "model.safetensors" not in names  # never the whole model
        record = read_loralib_record(checkpoint)
        assert record.spec.qkv_slices == ("q", "v") and record.spec.r == 8
        assert "MergedLinear on qkv_proj (q, v)" in record.describe()


def test_resuming_reads_the_loralib_checkpoint(run, tiny_model_dir, tmp_path):
    _, result = run
    checkpoint = result.checkpoints[0]
    resumed = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(96),
        output_dir=str(tmp_path),
        eval_size=16,
        training={**TRAINING, "max_steps": 10},  # already reached: resuming only loads the checkpoint
        lora=LORA,
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))

    def assert_model_holds(directory):
        saved = load_file(str(directory / LORALIB_WEIGHTS_NAME))
        state = resumed.trainer.model.state_dict()
        assert all(torch.equal(state[key], value) for key, value in saved.items()), directory.name

    assert_model_holds(checkpoint)
    # load_best_model_at_end goes through the same checked loader
    resumed.trainer.state.best_model_checkpoint = str(result.checkpoints[1])
    resumed.trainer._load_best_model()
    assert_model_holds(result.checkpoints[1])


def test_loralib_settings_survive_the_recipe_yaml(run, tmp_path):
    recipe, _ = run
    path = tmp_path / "recipe.yaml"
    recipe.to_yaml(path)
    again = Phi3LoraRecipe.from_yaml(path, dataset=sample_conversations(4))
    assert again.config.lora == recipe.config.lora


def test_loralib_cannot_be_combined_with_qlora(tiny_model_dir):
    with pytest.raises(ConfigError, match="cannot train QLoRA"):
        Phi3LoraRecipe(str(tiny_model_dir), sample_conversations(4), quantization="4bit", lora=LORA)


def test_the_adapter_merges_and_chats_like_any_other(run, tmp_path):
    """Runs last: chat() switches the in-memory model to eval(), which lets loralib merge its weights."""
    from transformers import AutoModelForCausalLM

    from phi3_lora_hub.model.loading import load_for_inference

    recipe, result = run
    merged = AutoModelForCausalLM.from_pretrained(str(recipe.merge_and_save(tmp_path / "merged")))
    peft_model, tokenizer = load_for_inference(recipe.config.model, result.adapter_dir)
    ids = token_batch(tokenizer)
    with torch.no_grad():
        assert (merged(input_ids=ids).logits - peft_model(input_ids=ids).logits).abs().max() < 1e-4
    reply = recipe.chat([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=8)
    assert isinstance(reply, str)
    assert all(layer.merged for layer in recipe.trainer.model.modules() if hasattr(layer, "merge_weights"))
