"""Generate Phi-3 chat answers that stop where they should.

Prompts are rendered in the Phi-3 format with a generation prompt, batches are padded on the left, and generation
stops on any of ``<|endoftext|>``, ``<|assistant|>`` and ``<|end|>``: stopping on the eos token alone runs past
the end of the turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3_lora_hub import phi3_format
from phi3_lora_hub.arena.votes import GenParams
from phi3_lora_hub.model.loading import stop_token_ids

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class Reply:
    """One generated answer."""

    text: str
    new_tokens: int
    stopped: bool
    """True when the model ended its turn with a stop token before ``max_new_tokens``."""


def phi3_generation_config(tokenizer, **overrides: Any):
    """A ``GenerationConfig`` with Phi-3's three stop ids, saved next to every adapter."""
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids(phi3_format.BOS),
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.convert_tokens_to_ids(phi3_format.EOS),
        **overrides,
    )


def generate_replies(
    model,
    tokenizer,
    conversations: Sequence[Messages],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = 0,
    batch_size: int = 8,
) -> list[Reply]:
    """Answer each conversation (its last turn should be the user's); ``temperature=0`` is greedy decoding.

    Batches are padded on the left for this call only; the tokenizer's own settings are left untouched.
    """
    import torch

    decoding = GenParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens).generate_kwargs()
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id
    device = next(model.parameters()).device
    replies: list[Reply] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(conversations), batch_size):
            batch = conversations[start : start + batch_size]
            prompts = [phi3_format.render(messages, add_generation_prompt=True).text for messages in batch]
            encoded = tokenizer(
                prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
            ).to(device)
            if seed is not None:
                torch.manual_seed(seed)
            with torch.no_grad():
                output = model.generate(
                    **encoded,
                    **decoding,
                    eos_token_id=stops,
                    pad_token_id=pad_id,
                    use_cache=True,
                )
            new = output[:, encoded["input_ids"].shape[1] :]
            for row in new.tolist():
                stop_at = next((i for i, token in enumerate(row) if token in stops), None)
                answer = row if stop_at is None else row[:stop_at]
                replies.append(
                    Reply(tokenizer.decode(answer, skip_special_tokens=True).strip(), len(answer), stop_at is not None)
                )
    finally:
        model.train(was_training)
    return replies


def load_for_inference(base_model: str, adapter: str | Path | None = None, *, revision: str | None = None):
    """Load ``base_model`` (and ``adapter`` on top, when given) for generation; returns ``(model, tokenizer)``.

    The tokenizer saved with the adapter is preferred, so the chat format matches what was trained.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from phi3_lora_hub.hardware import detect_hardware
    from phi3_lora_hub.model.loading import ADAPTER_PATH_HINT, check_local_directory, load_phi3_config, load_tokenizer

    hardware = detect_hardware()
    if adapter is not None:
        check_local_directory("Adapter", str(adapter), "adapter_config.json", ADAPTER_PATH_HINT)
    load_phi3_config(base_model, revision)
    dtype = torch.bfloat16 if hardware.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        base_model, revision=revision, dtype=dtype, trust_remote_code=False, attn_implementation="sdpa"
    )
    tokenizer_source = (
        str(adapter) if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file() else base_model
    )
    tokenizer = load_tokenizer(
        tokenizer_source, None if tokenizer_source != base_model else revision, for_training=False
    )
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    if hardware.cuda:
        model = model.to("cuda")
    model.eval()
    return model, tokenizer
