"""The chunked head logs what TRL's own head logs: the same loss, entropy, token accuracy and token count."""

from __future__ import annotations

import pytest
import torch

from phi3_lora_hub.data.sample import sample_conversations
from phi3_lora_hub.recipe import Phi3LoraRecipe

LOGGED = ("loss", "entropy", "mean_token_accuracy", "num_tokens")


def _logs(tiny_model_dir, tmp_path, *, fused: bool, training: dict) -> list[dict[str, float]]:
    torch.manual_seed(0)
    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(16),
        output_dir=str(tmp_path / ("fused" if fused else "trl")),
        training={"max_steps": 2, "save_strategy": "no", "logging_steps": 1, **training},
    )
    trainer = recipe.build_trainer()
    if not fused:
        trainer._uses_fused_loss = lambda: False  # TRL's own head for the same run
    assert trainer._uses_fused_loss() is fused
    trainer.train()
    return [{key: entry[key] for key in LOGGED} for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("training", [{}, {"padding_free": False}], ids=["padding-free", "padded"])
def test_the_logged_metrics_of_the_chunked_head_equal_trl_semantics(tiny_model_dir, tmp_path, training):
    fused = _logs(tiny_model_dir, tmp_path, fused=True, training=training)
    trl = _logs(tiny_model_dir, tmp_path, fused=False, training=training)
    assert len(fused) == len(trl) == 2
    for ours, theirs in zip(fused, trl, strict=True):
        assert ours["num_tokens"] == theirs["num_tokens"]
        for key in ("loss", "entropy", "mean_token_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-3, abs=1e-4), key
