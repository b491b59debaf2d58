"""The Trainer's ``eval_loss``, token-weighted: total NLL of the answer tokens over their number, on every process.

``transformers.Trainer`` reports the mean of per-batch mean losses: a batch of short answers weighs as much as a
batch of long ones, so ``exp(eval_loss)`` is not the perplexity of the evaluation data, and it differs from
:func:`phi3_lora_hub.evaluation.perplexity.assistant_perplexity` (the evaluation report) on the same rows. Under
several processes accelerate also completes the last batch with copies of the first rows, which the Trainer then
counts too.

:class:`TokenWeightedEvalLoss` replaces ``eval_loss`` by ``sum of NLL / number of trained tokens`` over the
evaluation set: each step sums the NLL and counts the labels of the real rows of its batch (the copies that pad the
last batch are left out, row by row), the sums are added across processes with ``accelerator.reduce``, and the
ratio is taken once at the end. The training loss is untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from phi3_lora_hub.data.tokenization import IGNORE_INDEX


def row_ids(inputs: dict[str, Any]) -> torch.Tensor:
    """For each position of the batch, the index of the dataset row it belongs to (``(batch, length)``).

    Padded batches hold one row per line. Padding-free batches concatenate rows in one line, each starting again
    at position 0; the padding such a line may end with (position 0 too) only follows the last row.
    """
    labels = inputs["labels"]
    position_ids = inputs.get("position_ids")
    if position_ids is None or labels.shape[0] > 1:
        return torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)
    return (position_ids == 0).cumsum(dim=1) - 1


def without_copies(inputs: dict[str, Any], real_rows: int) -> torch.Tensor:
    """The batch's labels with every row after the first ``real_rows`` set to ``-100`` (scored as nothing)."""
    return inputs["labels"].masked_fill(row_ids(inputs) >= real_rows, IGNORE_INDEX)


class TokenWeightedEvalLoss:
    """Trainer mixin: ``eval_loss`` (and every ``<prefix>_loss`` of ``evaluate``) is the token-weighted NLL.

    Put it before the ``Trainer`` subclass in the bases. Works with padded and padding-free batches, any number of
    processes and any evaluation size.
    """

    eval_nll_totals: torch.Tensor | None = None
    """``[NLL sum, label count]`` of the evaluation running now, on this process so far."""

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ):
        """``Trainer.evaluation_loop``, with the loss replaced by the token-weighted NLL of the whole set."""
        self.eval_nll_totals = None
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix=metric_key_prefix
        )
        totals, self.eval_nll_totals = self.eval_nll_totals, None
        if totals is not None and totals[1] > 0:
            output.metrics[f"{metric_key_prefix}_loss"] = float(totals[0] / totals[1])
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """``Trainer.prediction_step`` on the real rows; adds their NLL sum and label count, over all processes.

        The loss of a batch is the mean NLL of its labels (TRL's loss, and the recipe's chunked head, without
        ``num_items_in_batch``), so times the label count it is their sum.
        """
        if inputs.get("labels") is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        real_rows = self._real_rows(inputs)
        if real_rows is not None:
            inputs = {**inputs, "labels": without_copies(inputs, real_rows)}
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        tokens = (inputs["labels"][:, 1:] != IGNORE_INDEX).sum().double()
        nll = loss.detach().double().mean() * tokens if tokens > 0 else torch.zeros((), dtype=torch.float64)
        sums = torch.stack([nll.to(tokens.device), tokens]).to(self.accelerator.device)
        sums = self.accelerator.reduce(sums, reduction="sum").cpu()
        self.eval_nll_totals = sums if self.eval_nll_totals is None else self.eval_nll_totals + sums
        return loss, logits, labels

    def _real_rows(self, inputs: dict[str, Any]) -> int | None:
        """How many leading rows of this process's batch are real (``None``: all of them).

        Only the last batch of a multi-process evaluation holds copies: accelerate fills it from the first rows of
        the set, after the real ones, process by process; ``remainder`` is the number of real rows in that last
        global batch (what ``gather_for_metrics`` keeps).
        """
        state = self.accelerator.gradient_state
        if not state.end_of_dataloader or state.remainder <= 0:
            return None
        per_process = self.args.eval_batch_size
        return max(0, min(per_process, state.remainder - self.accelerator.process_index * per_process))
