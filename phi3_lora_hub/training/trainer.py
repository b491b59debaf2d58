"""``Phi3SFTTrainer``: TRL's ``SFTTrainer`` with the recipe's speed-ups, each exact.

- **Loss head**: the loss is computed by :func:`~phi3_lora_hub.training.loss.linear_cross_entropy` on the trained
  (non ``-100``) positions only, in chunks, with the hidden-state gradient made in the forward. TRL's own fused head
  skips masked positions only on Triton devices; on CPU it projects every position, prompt and padding included,
  and recomputes the logits in the backward.
- **Padding-free attention**: with ``padding_free=True`` and SDPA off CUDA, the model switches to
  :data:`~phi3_lora_hub.training.attention.VARLEN_SDPA` for the duration of ``train()``, so each packed sequence
  costs its own length squared instead of the row's. On CUDA the stock ``sdpa`` (one kernel per layer over the
  packed row, sequences masked apart by transformers) is faster and is kept.
- **Liger kernels** (RMSNorm, RoPE, SwiGLU) are applied on CUDA when ``liger_kernel`` is installed.

- **Evaluation loss**: ``eval_loss`` is the token-weighted NLL of the answer tokens of the whole evaluation set,
  on any number of processes (:class:`~phi3_lora_hub.training.eval_loss.TokenWeightedEvalLoss`), the number the
  evaluation report's perplexity is computed from.

Everything else (data preparation, collation, checkpoints) is TRL's; the chunked head's metrics are TRL's, counted
by the trainer itself and added in the public ``log``.
"""

from __future__ import annotations

import functools
import logging
import types
from collections import defaultdict
from typing import Any

import torch
from trl import SFTTrainer

from phi3_lora_hub.hardware import detect_hardware
from phi3_lora_hub.training.attention import VARLEN_SDPA, per_sequence_attention_pays, register_varlen_sdpa
from phi3_lora_hub.training.eval_loss import TokenWeightedEvalLoss
from phi3_lora_hub.training.loss import linear_cross_entropy

logger = logging.getLogger(__name__)

_FUSED_LOSS_FLAG = "phi3_fused_loss"
_LENGTH_GROUPED = ("group_by_length", "batch_rebalance")


def trainer_arguments(training: dict[str, Any]) -> dict[str, Any]:
    """The ``SFTConfig`` keyword arguments for the recipe's resolved ``training`` settings.

    Padding-free batches without packing need ``max_length=None`` in TRL (it refuses to pretend it truncates them);
    the recipe's data pipeline has already truncated every row to ``max_length``, keeping the start, as TRL would.
    Length-grouped sampling keeps the prepared ``length`` column (``remove_unused_columns=False``, unless the user
    chose), so the sampler reads the lengths instead of recounting them row by row; TRL's collator reads only the
    columns it needs, so the other prepared columns are harmless.
    """
    arguments = dict(training)
    if arguments.get("padding_free") and not arguments.get("packing"):
        arguments["max_length"] = None
    if arguments.get("train_sampling_strategy") in _LENGTH_GROUPED:
        arguments.setdefault("remove_unused_columns", False)
    return arguments


def liger_available() -> bool:
    """True when Liger's Triton kernels can run here: ``liger_kernel`` installed and a CUDA GPU present."""
    return detect_hardware().liger


def apply_liger_kernels(model) -> bool:
    """Patch ``model`` (a Phi-3, before PEFT wraps it) with Liger's RMSNorm, RoPE and SwiGLU; False if unavailable.

    Liger's fused linear cross-entropy is not used: the recipe's loss head already never builds the full logits.
    """
    if not liger_available() or getattr(model.config, "model_type", None) != "phi3":
        return False
    from liger_kernel.transformers import apply_liger_kernel_to_phi3

    apply_liger_kernel_to_phi3(
        rope=True, swiglu=True, rms_norm=True, cross_entropy=False, fused_linear_cross_entropy=False, model=model
    )
    logger.info("Applied Liger kernels (RMSNorm, RoPE, SwiGLU) to the Phi-3 model.")
    return True


def _causal_lm(model):
    """The ``*ForCausalLM`` module inside a PEFT model (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def install_fused_loss(causal_lm) -> None:
    """Let ``causal_lm(..., labels=..., phi3_fused_loss=True)`` return the chunked loss instead of logits.

    The forward is wrapped on the instance, as TRL does for its own fused head, so the call still goes through
    every wrapper around the model (PEFT, accelerate, DDP). Without the flag the forward is unchanged.
    """
    if getattr(causal_lm, "_phi3_fused_loss_installed", False):
        return
    previous = causal_lm.forward

    @functools.wraps(type(causal_lm).forward)
    def forward(self, *args, phi3_fused_loss: bool = False, **kwargs):
        if not phi3_fused_loss:
            return previous(*args, **kwargs)
        labels = kwargs.pop("labels")
        kwargs.pop("num_items_in_batch", None)
        kwargs["use_cache"] = False
        hidden = getattr(self, self.base_model_prefix)(*args, **kwargs).last_hidden_state
        # Position i predicts label i + 1; -100 marks prompts, padding and sequence boundaries.
        labels = labels[:, 1:].to(hidden.device)
        mask = labels != -100
        head = self.get_output_embeddings()
        return linear_cross_entropy(hidden[:, :-1][mask], head.weight, labels[mask])

    causal_lm.forward = types.MethodType(forward, causal_lm)
    causal_lm._phi3_fused_loss_installed = True


class RecipeCardsMixin:
    """Leaves model cards to the recipe, which writes its own next to each adapter and checkpoint.

    TRL writes a generic card into ``output_dir`` at every checkpoint, naming no base model and none of the run.
    """

    def create_model_card(self, *args, **kwargs) -> None:
        return None


class Phi3SFTTrainer(RecipeCardsMixin, TokenWeightedEvalLoss, SFTTrainer):
    """``trl.SFTTrainer`` with an exact, faster loss head and padding-free attention; same arguments."""

    def __init__(self, model=None, args=None, *pos, **kwargs) -> None:
        if model is not None and not isinstance(model, str) and args is not None and torch.cuda.is_available():
            apply_liger_kernels(model)
        super().__init__(model, args, *pos, **kwargs)
        install_fused_loss(_causal_lm(self.model))
        self._varlen_attention = (
            bool(self.padding_free)
            and self._attention_implementation() == "sdpa"
            and per_sequence_attention_pays(self.args.device)
        )
        self._fused_metrics: dict[str, defaultdict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._fused_train_tokens = 0

    @property
    def varlen_attention(self) -> bool:
        """True when ``train()`` and ``evaluate()`` run padding-free batches through the per-sequence SDPA kernel."""
        return self._varlen_attention

    def _attention_implementation(self) -> str | None:
        # transformers has a public setter (``set_attn_implementation``) but no public getter; the config's
        # ``_attn_implementation`` is what its own modeling code reads to dispatch attention.
        return getattr(_causal_lm(self.model).config, "_attn_implementation", None)

    def _uses_fused_loss(self) -> bool:
        """The chunked head replaces TRL's ``nll`` path exactly; other losses keep TRL's code."""
        return (
            self.args.loss_type == "nll"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and not self.aux_loss_enabled
            and self.accelerator.parallelism_config is None
        )

    def train(self, *args, **kwargs):
        """``SFTTrainer.train``, with varlen SDPA attention while it runs when batches are padding-free."""
        if not self._varlen_attention:
            return super().train(*args, **kwargs)
        causal_lm = _causal_lm(self.model)
        causal_lm.set_attn_implementation(register_varlen_sdpa())
        try:
            return super().train(*args, **kwargs)
        finally:
            causal_lm.set_attn_implementation("sdpa")

    def evaluate(self, *args, **kwargs):
        """``SFTTrainer.evaluate``, with varlen SDPA attention when batches are padding-free."""
        causal_lm = _causal_lm(self.model)
        if not self._varlen_attention or self._attention_implementation() == VARLEN_SDPA:
            return super().evaluate(*args, **kwargs)
        causal_lm.set_attn_implementation(register_varlen_sdpa())
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            causal_lm.set_attn_implementation("sdpa")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss (sum of label NLLs over ``num_items_in_batch``) and metrics, from the chunked head."""
        if return_outputs or not self._uses_fused_loss():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        parts = model(**inputs, **{_FUSED_LOSS_FLAG: True})
        tokens = parts.tokens if num_items_in_batch is None else num_items_in_batch
        loss = parts.loss_sum / torch.as_tensor(tokens, device=parts.loss_sum.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._record_metrics(mode, parts, inputs)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """``SFTTrainer.log``, with the chunked head's metrics averaged since the last log, as TRL averages its own.

        TRL adds nothing of its own for the steps the chunked head computed, so the keys do not collide.
        """
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        logs.update({f"{prefix}{key}": sum(values) / len(values) for key, values in self._fused_metrics[mode].items()})
        self._fused_metrics[mode].clear()
        super().log(logs, start_time)

    def _record_metrics(self, mode: str, parts, inputs: dict[str, Any]) -> None:
        """The metrics TRL logs, with its semantics: mean entropy, token accuracy and the running count of input
        tokens."""
        gather = self.accelerator.gather_for_metrics
        device = parts.loss_sum.device
        valid = gather(torch.tensor(parts.tokens, device=device)).sum()
        entropy = gather(parts.entropy_sum.detach()).sum()
        correct = gather(parts.correct).sum()
        metrics = self._fused_metrics[mode]
        metrics["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
        metrics["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                count = inputs["attention_mask"].sum()
            else:
                count = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
            self._fused_train_tokens += gather(count).sum().item() // self.get_tp_size()
        metrics["num_tokens"] = [self._fused_train_tokens]
