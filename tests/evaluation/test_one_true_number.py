"""One true number: every loss and perplexity a run reports is the token-weighted NLL of the answer tokens.

The Trainer's evaluation during training, ``TrainResult.metrics``, the evaluation report (``recipe.evaluate()``
and ``phi3-lora-hub eval``) and the model card all give the same evaluation loss and perplexity for the same
conversations, to float tolerance. The rows here have very unequal answer lengths and the evaluation batches hold
3, 3 and 1 rows, so a mean of per-batch means (the Trainer's own ``eval_loss``) would differ by far more.
"""

from __future__ import annotations

import json
import math

import pytest

from phi3_lora_hub import Phi3LoraRecipe
from phi3_lora_hub.evaluation.perplexity import perplexity_from_nll
from phi3_lora_hub.evaluation.report import EvaluationReport

REL = 1e-5
EVAL_ROWS = 7


def uneven_conversations(count: int) -> list[dict]:
    """Conversations whose answers range from one word to about 120."""
    rows = []
    for index in range(count):
        words = 1 + (index * 37) % 120
        answer = " ".join(f"tok{(index + k) % 17}" for k in range(words))
        rows.append(
            {"messages": [{"role": "user", "content": f"Question {index}?"}, {"role": "assistant", "content": answer}]}
        )
    return rows


@pytest.fixture(scope="module")
def run(small_base, tmp_path_factory):
    output = tmp_path_factory.mktemp("one-number")
    recipe = Phi3LoraRecipe(
        str(small_base),
        uneven_conversations(40),
        output_dir=str(output),
        eval_size=EVAL_ROWS,
        training={
            "max_steps": 4,
            "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 3,
            "learning_rate": 5e-3,
            "save_steps": 2,
            "logging_steps": 1,
            "disable_tqdm": True,
        },
        evaluation={"max_examples": None, "metrics": ["perplexity"], "num_samples": 0, "include_base": False},
    )
    return recipe, recipe.train()


def test_the_trainer_the_result_the_report_and_the_card_give_the_same_evaluation_loss(run):
    _, result = run
    report = EvaluationReport.read(result.adapter_dir)
    assert report.num_examples == EVAL_ROWS
    measured = report.results["adapter"]
    assert result.metrics["eval_loss"] == pytest.approx(measured["mean_nll"], rel=REL)
    assert result.metrics["eval_perplexity"] == pytest.approx(measured["perplexity"], rel=REL)
    assert measured["perplexity"] == pytest.approx(perplexity_from_nll(measured["mean_nll"]), rel=1e-12)
    # The loss logged at the last evaluation during training is the same number again.
    last_logged = [entry["eval_loss"] for entry in result.log_history if "eval_loss" in entry][-1]
    assert last_logged == pytest.approx(measured["mean_nll"], rel=REL)
    card = (result.adapter_dir / "README.md").read_text()
    assert f"| Evaluation perplexity | {measured['perplexity']:.4g} |" in card


def test_an_evaluation_from_disk_gives_the_number_of_the_run(run):
    recipe, result = run
    from_disk = recipe.evaluate(adapter=result.adapter_dir, output=result.output_dir / "again.json", progress=False)
    assert from_disk.results["adapter"]["mean_nll"] == pytest.approx(result.metrics["eval_loss"], rel=REL)


def test_each_checkpoint_logs_the_token_weighted_loss_of_its_weights(run):
    """Evaluate checkpoint-2 from disk: its logged eval_loss is the token-weighted NLL of its adapter."""
    recipe, result = run
    checkpoint = result.output_dir / "checkpoint-2"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    logged = next(
        entry["eval_loss"] for entry in state["log_history"] if entry.get("step") == 2 and "eval_loss" in entry
    )
    report = recipe.evaluate(adapter=checkpoint, output=result.output_dir / "step2.json", progress=False)
    assert logged == pytest.approx(report.results["adapter"]["mean_nll"], rel=REL)
    assert math.isfinite(logged)


def test_the_copies_that_fill_a_last_batch_are_masked_row_by_row_in_both_batch_layouts():
    import torch

    from phi3_lora_hub.training.eval_loss import without_copies

    padded = {"labels": torch.tensor([[-100, 5, 6], [-100, 7, -100], [-100, 8, 9]])}
    assert without_copies(padded, 2).tolist() == [[-100, 5, 6], [-100, 7, -100], [-100, -100, -100]]
    # Padding-free: three rows in one line, each starting again at position 0, then padding (position 0 too).
    flat = {
        "labels": torch.tensor([[-100, 5, 6, -100, 7, -100, 8, -100, -100]]),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 1, 0, 0]]),
    }
    assert without_copies(flat, 1).tolist() == [[-100, 5, 6, -100, -100, -100, -100, -100, -100]]
    assert without_copies(flat, 3).tolist() == flat["labels"].tolist()
