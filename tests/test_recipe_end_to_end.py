"""End to end on the tiny Phi-3: train a few steps, loss falls, adapter files exist, reload, merge, generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from phi3_lora_hub import Phi3LoraRecipe
from phi3_lora_hub.data.sample import sample_conversations, sample_prompts
from phi3_lora_hub.generation import generate_replies
from phi3_lora_hub.model.loading import load_for_inference

FAST_TRAINING = {
    "max_steps": 40,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 3e-3,
    "save_steps": 20,
    "logging_steps": 5,
    "disable_tqdm": True,
}


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("e2e")
    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(200),
        output_dir=str(output),
        eval_size=0.1,
        training=FAST_TRAINING,
        lora={"r": 8},
    )
    return recipe, recipe.train()


def test_loss_falls_and_metrics_are_reported(trained):
    _, result = trained
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert losses[-1] < losses[0] * 0.6, losses
    assert result.global_step == 40
    assert result.metrics["eval_loss"] < losses[0]
    assert result.metrics["eval_perplexity"] == pytest.approx(torch.tensor(result.metrics["eval_loss"]).exp().item())
    assert result.train_data.rows_used == 180 and result.eval_data.rows_used == 20


def test_adapter_directory_holds_everything_needed(trained):
    recipe, result = trained
    files = {path.name for path in result.adapter_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "generation_config.json"} <= files
    assert {"phi3_lora_recipe.yaml", "data_report.json"} <= files
    assert not {"optimizer.pt", "training_args.bin", "adapter_model.bin"} & files
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]
    assert config["r"] == 8 and config["base_model_name_or_path"] == recipe.config.model
    assert [path.name for path in result.checkpoints] == ["checkpoint-20", "checkpoint-40"]
    for checkpoint in result.checkpoints:  # every checkpoint is a usable adapter with its recipe
        assert (checkpoint / "phi3_lora_recipe.yaml").is_file() and (checkpoint / "generation_config.json").is_file()
    again = Phi3LoraRecipe.from_yaml(result.adapter_dir / "phi3_lora_recipe.yaml")
    assert again.config == recipe.config


def test_the_adapter_and_each_checkpoint_carry_the_recipes_model_card(trained):
    recipe, result = trained
    card = (result.adapter_dir / "README.md").read_text()
    assert "[More Information Needed]" not in card  # not PEFT's blank template
    assert card.startswith("---\n") and "library_name: peft" in card and "- phi3-lora-hub" in card
    assert "### Evaluation: base model vs adapter" in card and "Perplexity (answer tokens)" in card
    assert f'PeftModel.from_pretrained(base, "{result.adapter_dir}")' in card  # loads from where it is
    assert (result.adapter_dir / "loss_curve.png").is_file()
    for checkpoint in result.checkpoints:
        text = (checkpoint / "README.md").read_text()
        step = checkpoint.name.split("-")[-1]
        assert "[More Information Needed]" not in text and f"after {step} training steps" in text
        assert (checkpoint / "sample_generations.json").is_file()
        assert f"### Sample answers up to step {step}" in text  # the answers of the checkpoint's own step
    assert not (Path(recipe.config.output_dir) / "README.md").exists()  # no generic TRL card beside them


def test_adapter_reloads_with_plain_peft(trained, tiny_model_dir):
    recipe, result = trained
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(result.adapter_dir))
    saved = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    state = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(saved) == len(state) > 0
    inputs = torch.tensor([[5, 6, 7, 8]])
    recipe.trainer.model.eval()
    with torch.no_grad():
        expected = recipe.trainer.model(input_ids=inputs).logits
        assert torch.allclose(model(input_ids=inputs).logits, expected, atol=1e-5)


def test_adapter_changes_the_answers(trained, tiny_model_dir):
    recipe, result = trained
    base, tokenizer = load_for_inference(str(tiny_model_dir))
    adapted, _ = load_for_inference(str(tiny_model_dir), result.adapter_dir)
    prompts = sample_prompts()
    assert [r.text for r in generate_replies(base, tokenizer, prompts)] != [
        r.text for r in generate_replies(adapted, tokenizer, prompts)
    ]
    answer = recipe.chat(prompts[0], max_new_tokens=24)
    assert isinstance(answer, str) and answer


def test_merged_model_loads_with_plain_transformers_and_matches(trained, tmp_path, tiny_model_dir):
    recipe, result = trained
    merged_dir = recipe.merge_and_save(tmp_path / "merged")
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    adapted, _ = load_for_inference(str(tiny_model_dir), result.adapter_dir)
    inputs = tokenizer(
        "<|user|>\nWhere is Peru?<|end|>\n<|assistant|>\n", return_tensors="pt", add_special_tokens=False
    )
    with torch.no_grad():
        assert torch.allclose(merged(**inputs).logits, adapted(**inputs).logits, atol=1e-4)
    assert merged.generation_config.eos_token_id == [
        tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|assistant|>", "<|end|>")
    ]


def test_resume_from_a_local_checkpoint_gives_identical_weights(tiny_model_dir, tmp_path):
    def run(output, **kwargs):
        recipe = Phi3LoraRecipe(
            str(tiny_model_dir),
            sample_conversations(64),
            output_dir=str(output),
            training={**FAST_TRAINING, "max_steps": 8, "save_steps": 4},
            lora={"r": 4},
        )
        return recipe, recipe.train(**kwargs)

    _, full = run(tmp_path / "full")
    run(tmp_path / "partial")
    import shutil

    shutil.rmtree(tmp_path / "partial" / "checkpoint-8")
    shutil.rmtree(tmp_path / "partial" / "adapter")
    _, resumed = run(tmp_path / "partial", resume_from_checkpoint=str(tmp_path / "partial" / "checkpoint-4"))
    a = load_file(str(full.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
