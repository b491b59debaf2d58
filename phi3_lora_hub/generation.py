"""Generate Phi-3 chat answers that stop where they should: the project's one generation helper.

Prompts are rendered in the Phi-3 format with a generation prompt and padded on the left (built here, so the
caller's tokenizer keeps its own padding side), and generation stops on any of ``<|endoftext|>``,
``<|assistant|>`` and ``<|end|>``: stopping on the eos token alone runs past the end of the turn. Decoding
settings are a ``transformers.GenerationConfig`` (:mod:`phi3_lora_hub.decoding`); its ``seed`` entry seeds
sampling from a private RNG state, so generating in the middle
of training leaves training's randomness as it was.

:func:`generate_replies` answers a list of conversations in batches of similar prompt length (less padding),
with the KV cache, and returns the replies in the order given. The Space streams its two panes through the same
pieces (:func:`prompt_ids`, :func:`left_padded`, :func:`decoding_config`, :func:`private_rng`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import GenerationConfig

from phi3_lora_hub import phi3_format
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.model.loading import stop_token_ids
from phi3_lora_hub.progress_bars import progress_bars

Messages = Sequence[dict[str, str]]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Reply:
    """One generated answer."""

    text: str
    """The answer: decoded without special tokens, stripped."""
    raw_text: str
    """What the model wrote, special tokens kept, up to and including the first stop token."""
    new_tokens: int
    """Tokens of the answer, the stop token not counted."""
    finish_reason: FinishReason
    """``stop`` when the model ended its turn, ``length`` when ``max_new_tokens`` cut it off."""
    latency_s: float = field(compare=False)
    """Wall time of the batch divided by its size (answers of a batch are generated together); not compared:
    two replies with the same tokens are the same answer."""

    @property
    def stopped(self) -> bool:
        """True when the model ended its turn with a stop token before ``max_new_tokens``."""
        return self.finish_reason == "stop"


def phi3_generation_config(tokenizer: Any, **overrides: Any) -> GenerationConfig:
    """A ``GenerationConfig`` with Phi-3's three stop ids, saved next to every adapter."""
    return GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids(phi3_format.BOS),
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.convert_tokens_to_ids(phi3_format.EOS),
        **overrides,
    )


def decoding_config(tokenizer: Any, generation_config: GenerationConfig | None) -> GenerationConfig:
    """A copy of ``generation_config`` (default: greedy, 256 new tokens) with Phi-3's stop ids and padding id
    filled in where it has none, and the KV cache on."""
    config = copy.deepcopy(generation_config) if generation_config is not None else chat_generation_config()
    if config.eos_token_id is None:
        config.eos_token_id = stop_token_ids(tokenizer)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.convert_tokens_to_ids(phi3_format.EOS)
    config.use_cache = True
    return config


def stop_ids_of(config: GenerationConfig) -> set[int]:
    """The token ids that end an answer under ``config``."""
    eos = config.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


def prompt_ids(tokenizer: Any, conversations: Sequence[Messages]) -> list[list[int]]:
    """Token ids of each conversation rendered in the Phi-3 format with a generation prompt."""
    texts = [phi3_format.render(messages, add_generation_prompt=True).text for messages in conversations]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def left_padded(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of ``rows`` padded on the left to the longest, on ``device``."""
    width = max(map(len, rows))
    input_ids = torch.tensor([[pad_id] * (width - len(row)) + list(row) for row in rows], device=device)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
    return {"input_ids": input_ids, "attention_mask": mask}


@contextlib.contextmanager
def private_rng(config: GenerationConfig, device: Any) -> Iterator[None]:
    """Run the block on a forked RNG state, seeded with ``config``'s ``seed`` entry when it has one; the
    caller's RNG state (CPU and ``device``) is restored afterwards."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed = getattr(config, "seed", None)
        if seed is not None:
            torch.manual_seed(seed)
        yield


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches of ``batch_size``, longest prompts first, so each batch holds prompts
    of similar length (less padding) and running out of memory shows in the first batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def generate_replies(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Messages],
    generation_config: GenerationConfig | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
    description: str = "Generating",
) -> list[Reply]:
    """Answer each conversation (its last turn should be the user's) with ``model`` as it is now (adapter state
    included), in the order given.

    ``generation_config`` defaults to greedy decoding of up to 256 tokens; Phi-3's stop ids are used when it
    names none. The model is put in eval mode and restored afterwards, gradients are off, and neither the
    tokenizer nor the caller's RNG state is changed.
    """
    from tqdm.auto import tqdm

    config = decoding_config(tokenizer, generation_config)
    stops = stop_ids_of(config)
    device = next(model.parameters()).device
    encoded = prompt_ids(tokenizer, conversations)
    replies: list[Reply | None] = [None] * len(conversations)
    was_training = model.training
    model.eval()
    try:
        batches = length_batches([len(ids) for ids in encoded], batch_size)
        for batch in tqdm(batches, desc=description, unit="batch", disable=not progress_bars(progress)):
            inputs = left_padded([encoded[index] for index in batch], config.pad_token_id, device)
            began = time.perf_counter()
            with private_rng(config, device), torch.no_grad():
                output = model.generate(**inputs, generation_config=config)
            latency = (time.perf_counter() - began) / len(batch)
            for index, row in zip(batch, output[:, inputs["input_ids"].shape[1] :].tolist(), strict=True):
                replies[index] = _reply(tokenizer, row, stops, latency)
    finally:
        model.train(was_training)
    return [reply for reply in replies if reply is not None]


def _reply(tokenizer: Any, row: list[int], stops: set[int], latency: float) -> Reply:
    stop_at = next((i for i, token in enumerate(row) if token in stops), None)
    answer = row if stop_at is None else row[:stop_at]
    kept = row if stop_at is None else row[: stop_at + 1]
    return Reply(
        text=tokenizer.decode(answer, skip_special_tokens=True).strip(),
        raw_text=tokenizer.decode(kept, skip_special_tokens=False),
        new_tokens=len(answer),
        finish_reason="length" if stop_at is None else "stop",
        latency_s=latency,
    )
