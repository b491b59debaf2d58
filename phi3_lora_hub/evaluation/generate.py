"""Batched generation for evaluation: the answer, the raw text the model wrote, and why it stopped.

Same conventions as :func:`phi3_lora_hub.generation.generate_replies` (Phi-3 rendering with a generation prompt,
left padding, stopping on all three Phi-3 stop tokens, greedy at ``temperature=0``, seeded per batch), plus
what evaluation needs on top: the raw text with its stop token (for the stop rate), the finish reason, the time
taken, and a progress bar. Neither the tokenizer nor the global RNG state is changed, so this can run inside a
training loop without changing what training does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from phi3_lora_hub import phi3_format
from phi3_lora_hub.arena.votes import GenParams

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class Generation:
    """One generated answer."""

    text: str
    """The answer: decoded without special tokens, stripped."""
    raw_text: str
    """What the model wrote, special tokens kept, up to and including the first stop token."""
    new_tokens: int
    """Tokens of the answer, the stop token not counted."""
    finish_reason: str
    """``stop`` when the model ended its turn, ``length`` when ``max_new_tokens`` cut it off."""
    latency_s: float
    """Wall time of the batch divided by its size (answers of a batch are generated together)."""


def _cuda_devices(torch) -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _stop_ids(tokenizer) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(token) for token in phi3_format.STOP_TOKENS]


def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[Messages],
    params: GenParams | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
    description: str = "Generating",
) -> list[Generation]:
    """Answer each prompt (messages ending with a user turn) with ``model`` as it is now (adapter state included).

    ``params`` defaults to ``GenParams()`` (greedy, 256 new tokens, seed 0).
    The model is put in eval mode and restored afterwards; gradients are off.
    """
    import torch
    from tqdm.auto import tqdm

    from phi3_lora_hub.training.progress import progress_bars

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = params or GenParams()
    stops = _stop_ids(tokenizer)
    pad_id = tokenizer.convert_tokens_to_ids(phi3_format.EOS)
    device = next(model.parameters()).device
    results: list[Generation] = []
    was_training = model.training
    model.eval()
    try:
        starts = range(0, len(prompts), batch_size)
        for start in tqdm(starts, desc=description, unit="batch", disable=not progress_bars(progress)):
            batch = prompts[start : start + batch_size]
            texts = [phi3_format.render(messages, add_generation_prompt=True).text for messages in batch]
            encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
            width = max(map(len, encoded))
            # Left padding, built here so the caller's tokenizer settings (right padding while training) stay put.
            input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in encoded], device=device)
            mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
            began = time.perf_counter()
            # A private RNG state: seeding must not change the caller's randomness (e.g. training mid-run).
            with torch.random.fork_rng(devices=_cuda_devices(torch)), torch.no_grad():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    **params.generate_kwargs(),
                    eos_token_id=stops,
                    pad_token_id=pad_id,
                    use_cache=True,
                )
            latency = (time.perf_counter() - began) / len(batch)
            for row in output[:, width:].tolist():
                stop_at = next((i for i, token in enumerate(row) if token in stops), None)
                answer = row if stop_at is None else row[:stop_at]
                kept = row if stop_at is None else row[: stop_at + 1]
                results.append(
                    Generation(
                        text=tokenizer.decode(answer, skip_special_tokens=True).strip(),
                        raw_text=tokenizer.decode(kept, skip_special_tokens=False),
                        new_tokens=len(answer),
                        finish_reason="length" if stop_at is None else "stop",
                        latency_s=latency,
                    )
                )
    finally:
        model.train(was_training)
    return results
