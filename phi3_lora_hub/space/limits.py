"""Checks on what a visitor sends: prompt and system prompt, and the generation settings.

Gradio's ``Slider`` already refuses values outside its range, on the server too (6.31: "Value 65 is greater
than maximum value 64."); these checks are the Space's own, independent of the UI, and cover what sliders do not
(whole numbers, the seed, control tokens in text). Every problem is a :class:`Refusal` saying what the limit is.
"""

from __future__ import annotations

import math

from transformers import GenerationConfig

from phi3_lora_hub import phi3_format
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.space.refusal import Refusal, quote

MAX_TEMPERATURE = 2.0
MAX_SEED = 2**32 - 1


def check_text(text: str | None, *, what: str, max_chars: int, required: bool) -> str:
    """``text`` stripped, when it is within ``max_chars`` and holds no Phi-3 control token."""
    text = (text or "").strip()
    if required and not text:
        raise Refusal(f"Write a {what} first.")
    if len(text) > max_chars:
        raise Refusal(f"The {what} is {len(text)} characters long; this Space accepts at most {max_chars}.")
    token = phi3_format.contains_control_token(text)
    if token:
        raise Refusal(
            f"The {what} contains the Phi-3 control token {token}, which would fake a turn boundary; remove it."
        )
    return text


def check_prompt(text: str | None, max_chars: int) -> str:
    return check_text(text, what="prompt", max_chars=max_chars, required=True)


def check_system_prompt(text: str | None, max_chars: int) -> str:
    return check_text(text, what="system prompt", max_chars=max_chars, required=False)


def gen_params(
    temperature: float, top_p: float, max_new_tokens: float, seed: float | None, *, cap: int
) -> GenerationConfig:
    """The settings both panes use, checked against the Space's limits (``max_new_tokens`` at most ``cap``)."""
    values = {"temperature": temperature, "top p": top_p, "max new tokens": max_new_tokens}
    for name, value in values.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Refusal(f"{name} must be a number, got {quote(value)}.")
    if not 0 <= temperature <= MAX_TEMPERATURE:
        raise Refusal(f"temperature must be between 0 (greedy) and {MAX_TEMPERATURE:g}, got {temperature:g}.")
    if not 0 < top_p <= 1:
        raise Refusal(f"top p must be above 0 and at most 1, got {top_p:g}.")
    if int(max_new_tokens) != max_new_tokens or not 1 <= max_new_tokens <= cap:
        raise Refusal(f"max new tokens must be a whole number from 1 to {cap} on this Space, got {max_new_tokens:g}.")
    if seed is not None and (
        not isinstance(seed, (int, float)) or not math.isfinite(seed) or int(seed) != seed or not 0 <= seed <= MAX_SEED
    ):
        raise Refusal(f"seed must be a whole number from 0 to {MAX_SEED}, got {quote(seed)}.")
    return chat_generation_config(
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=int(max_new_tokens),
        seed=None if seed is None else int(seed),
    )
