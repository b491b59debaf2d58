"""Perplexity of a model on reference conversations, counted on the tokens it was trained to produce.

The model scored is the model being evaluated (a base model, or a ``PeftModel`` with the adapter active or
disabled), not a separate scoring model. With ``assistant_only`` the loss counts each assistant answer and the
``<|end|>`` closing it, exactly the labels training used; prompts, system messages and padding are ignored.

Perplexity is ``exp(total NLL / total scored tokens)`` over the whole set (token-weighted), which is what
"perplexity on this data" means. The Trainer's ``eval_loss`` of a recipe run is the same token-weighted mean
(:mod:`phi3_lora_hub.training.eval_loss`), so on the same conversations ``perplexity_from_nll(eval_loss)`` is this
perplexity, to float tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from phi3_lora_hub.data.tokenization import IGNORE_INDEX, tokenize_conversations
from phi3_lora_hub.progress_bars import progress_bars

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    """``exp(mean_nll)``; ``inf`` when the mean NLL overflows."""
    mean_nll: float
    """Mean negative log-likelihood per scored token, in nats."""
    scored_tokens: int
    per_conversation: list[float]
    """Perplexity of each conversation (NaN for one without scored tokens)."""


def perplexity_from_nll(mean_nll: float) -> float:
    """``exp(mean_nll)``, or ``inf`` where that overflows: the one perplexity formula of every report and card."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def assistant_perplexity(
    model,
    tokenizer,
    conversations: Sequence[Messages],
    *,
    batch_size: int = 4,
    max_length: int | None = None,
    assistant_only: bool = True,
    progress: bool = False,
) -> PerplexityResult:
    """Score ``conversations`` (full Phi-3 ``messages``, answers included) with ``model``.

    ``max_length`` truncates each conversation to its first tokens, as training does. The model is put in eval
    mode for the computation and restored afterwards. Raises ``ValueError`` when nothing is left to score.
    """
    import torch
    from tqdm.auto import tqdm

    if not conversations:
        raise ValueError("no conversations to score")
    batch = tokenize_conversations(tokenizer, conversations, assistant_only_loss=assistant_only)
    rows = list(zip(batch.input_ids, batch.labels, strict=True))
    if max_length is not None:
        rows = [(ids[:max_length], labels[:max_length]) for ids, labels in rows]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id
    device = next(model.parameters()).device
    nll = [0.0] * len(rows)
    counts = [0] * len(rows)
    # Longest first, so similar lengths share a batch and padding stays small.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    starts = range(0, len(order), batch_size)
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(starts, desc="Perplexity", unit="batch", disable=not progress_bars(progress)):
            chunk = order[start : start + batch_size]
            width = max(len(rows[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                row_ids, row_labels = rows[index]
                ids[row, : len(row_ids)] = torch.tensor(row_ids)
                labels[row, : len(row_labels)] = torch.tensor(row_labels)
                mask[row, : len(row_ids)] = 1
            with torch.no_grad():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                # Token t is predicted from position t - 1. One row at a time in float32: a batch of Phi-3
                # logits (32064 per token) in float32 would need several GB more.
                targets = labels[:, 1:].to(device)
                for row, index in enumerate(chunk):
                    nll[index] = float(
                        torch.nn.functional.cross_entropy(
                            logits[row, :-1].float(), targets[row], ignore_index=IGNORE_INDEX, reduction="sum"
                        )
                    )
                    counts[index] = int((targets[row] != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    total_tokens = sum(counts)
    if total_tokens == 0:
        raise ValueError("no tokens to score: the conversations have no assistant answers (or max_length cut them)")
    mean_nll = sum(nll) / total_tokens
    per_conversation = [perplexity_from_nll(n / c) if c else math.nan for n, c in zip(nll, counts, strict=True)]
    return PerplexityResult(perplexity_from_nll(mean_nll), mean_nll, total_tokens, per_conversation)
