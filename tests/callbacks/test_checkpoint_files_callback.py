"""``CheckpointFilesCallback`` in a user's own trainer: Phi-3's stop ids and the run's reports in each checkpoint."""

from __future__ import annotations

import json

import pytest
from transformers import GenerationConfig

from phi3_lora_hub import CheckpointFilesCallback, ModelCardCallback

STOP_TOKENS = ["<|endoftext|>", "<|assistant|>", "<|end|>"]
REPORT = {"train": {"source": "support.jsonl", "format": "messages", "rows_used": 16, "trained_tokens": 640}}


@pytest.mark.parametrize("run", ["sft_run", "trainer_run"])
def test_each_checkpoint_stops_on_phi3s_end_of_turn_and_says_what_it_was_trained_on(
    run, request, plain_parts, tmp_path
):
    train, tokenizer = request.getfixturevalue(run), plain_parts[1]
    stop_ids = set(tokenizer.convert_tokens_to_ids(STOP_TOKENS))
    train(tmp_path, [CheckpointFilesCallback(recipe_yaml="model: tiny\n", data_report=REPORT), ModelCardCallback()])
    for step in (2, 4):
        checkpoint = tmp_path / f"checkpoint-{step}"
        assert set(GenerationConfig.from_pretrained(checkpoint).eos_token_id) == stop_ids  # the Trainer's tokenizer
        assert json.loads((checkpoint / "data_report.json").read_text()) == REPORT
        assert (checkpoint / "phi3_lora_recipe.yaml").read_text() == "model: tiny\n"
        card = (checkpoint / "README.md").read_text()  # the card, written after them, shows them
        assert "16 conversations of support.jsonl" in card and "`generation_config.json` in this repository" in card


def test_a_given_generation_config_is_written_as_is_and_absent_values_write_no_file(sft_run, tmp_path):
    mine = GenerationConfig(eos_token_id=[7], max_new_tokens=9)
    sft_run(tmp_path, [CheckpointFilesCallback(generation_config=mine)])
    checkpoint = tmp_path / "checkpoint-2"
    saved = GenerationConfig.from_pretrained(checkpoint)
    assert saved.eos_token_id == [7] and saved.max_new_tokens == 9
    assert not (checkpoint / "data_report.json").exists() and not (checkpoint / "phi3_lora_recipe.yaml").exists()
