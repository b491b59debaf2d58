"""Where the speed-ups are on by default, and that the recipe's trainer uses them."""

from __future__ import annotations

import pytest

from phi3_lora_hub.config.training import resolve_training
from phi3_lora_hub.hardware import Hardware
from phi3_lora_hub.training.trainer import apply_liger_kernels, liger_available, trainer_arguments

CPU = Hardware(cuda=False, bf16=False, flash_attention=False, device_name="cpu")


def test_padding_free_is_the_default_and_the_trainer_gets_no_max_length():
    training = resolve_training(None, CPU)
    assert training["padding_free"] is True and training["max_length"] == 2048
    assert "train_sampling_strategy" not in training
    arguments = trainer_arguments(training)
    assert arguments["max_length"] is None and training["max_length"] == 2048


def test_batch_size_one_pads_nothing_so_padding_free_is_off():
    training = resolve_training({"per_device_train_batch_size": 1}, CPU)
    assert training["padding_free"] is False
    assert trainer_arguments(training)["max_length"] == 2048


@pytest.mark.parametrize("user", [{"padding_free": False}, {"per_device_train_batch_size": 1}])
def test_padded_batches_are_grouped_by_length_unless_the_user_chose_a_sampler(user):
    assert resolve_training(user, CPU)["train_sampling_strategy"] == "group_by_length"
    chosen = resolve_training({**user, "train_sampling_strategy": "random"}, CPU)
    assert chosen["train_sampling_strategy"] == "random"


def test_packing_keeps_max_length_for_trl_to_pack_to():
    training = resolve_training({"packing": True}, CPU)
    assert trainer_arguments(training)["max_length"] == 2048


def test_liger_is_only_applied_where_it_can_run(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert apply_liger_kernels(model) is liger_available()


def test_recipe_trainer_is_padding_free_with_the_chunked_head(tiny_model_dir, tmp_path):
    from phi3_lora_hub.data.sample import sample_conversations
    from phi3_lora_hub.recipe import Phi3LoraRecipe
    from phi3_lora_hub.training.trainer import Phi3SFTTrainer

    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(16),
        output_dir=str(tmp_path),
        training={"max_steps": 2, "save_strategy": "no", "logging_steps": 1},
    )
    trainer = recipe.build_trainer()
    assert isinstance(trainer, Phi3SFTTrainer) and trainer.padding_free and trainer._uses_fused_loss()
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all(key in logged[0] for key in ("entropy", "mean_token_accuracy", "num_tokens"))
    assert trainer.model.get_base_model().config._attn_implementation == "sdpa"  # restored after train()


def test_length_grouped_sampling_reads_the_prepared_lengths(tiny_model_dir, tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from phi3_lora_hub.data.sample import sample_conversations
    from phi3_lora_hub.recipe import Phi3LoraRecipe

    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(24),
        output_dir=str(tmp_path),
        training={"padding_free": False, "max_steps": 1, "save_strategy": "no"},
    )
    trainer = recipe.build_trainer()
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" in batch and batch["input_ids"].shape[0] == 4
    sampler = trainer._get_train_sampler(trainer._remove_unused_columns(trainer.train_dataset))
    assert isinstance(sampler, LengthGroupedSampler)
    assert list(sampler.lengths) == trainer.train_dataset["length"]
