"""``ModelCardCallback`` in a user's own trainer: a card for each checkpoint, from plain values and the state."""

from __future__ import annotations

import json

import pytest

from phi3_lora_hub import ModelCardCallback
from phi3_lora_hub.cards.context import number
from phi3_lora_hub.errors import ConfigError

BASE = "microsoft/Phi-3-mini-4k-instruct"


def logged_loss(checkpoint, step: int) -> float:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return next(entry["loss"] for entry in history if entry.get("step") == step and "loss" in entry)


@pytest.mark.parametrize("run", ["sft_run", "trainer_run"])
def test_a_card_shows_each_checkpoints_step_and_loss_in_a_plain_trainer(run, request, tmp_path):
    train = request.getfixturevalue(run)
    callback = ModelCardCallback("me/phi3-chat-lora", base_model=BASE, dataset="my support chats", license="apache-2.0")
    train(tmp_path, [callback])
    for step in (2, 4):
        checkpoint = tmp_path / f"checkpoint-{step}"
        card = (checkpoint / "README.md").read_text()
        assert f"base_model: {BASE}" in card and "license: apache-2.0" in card
        assert f"describes the checkpoint at step {step}" not in card  # a card of files, not of a Hub push
        assert f"after {step} training steps" in card and "my support chats" in card
        assert f"| Training loss (last logged) | {number(logged_loss(checkpoint, step))} |" in card
        assert "| `learning_rate` | 0.001 |" in card  # the Trainer's arguments, as no recipe YAML lists them
        assert 'PeftModel.from_pretrained(base, "me/phi3-chat-lora")' in card
        assert (checkpoint / "loss_curve.png").is_file()


def test_a_card_names_the_base_model_the_adapter_records_when_none_is_given(sft_run, small_base, tmp_path):
    sft_run(tmp_path, [ModelCardCallback()])
    card = (tmp_path / "checkpoint-4" / "README.md").read_text()
    assert f"the Phi-3 model in `{small_base}`" in card and "an unnamed dataset" in card
    assert f'PeftModel.from_pretrained(base, "{tmp_path / "checkpoint-4"}")' in card  # no repo_id: the directory


def test_a_card_template_that_does_not_exist_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ModelCardCallback(template=tmp_path / "missing.md.j2")
