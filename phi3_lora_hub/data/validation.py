"""Checks that a converted conversation can be trained on, naming the row and field of every problem.

A trainable conversation has an optional system message first, then user and assistant turns that alternate,
at least one assistant answer, no empty answers, no Phi-3 control tokens inside any message, and only text a
tokenizer can encode (no lone surrogates).

Control tokens (``<|end|>``, ``<|assistant|>``, ...) inside message text are refused: the tokenizer would read
them as real turn boundaries, so user text could fake an assistant turn and change what the loss trains on.
"""

from __future__ import annotations

from collections.abc import Sequence

from phi3_lora_hub import phi3_format
from phi3_lora_hub.errors import DataProblem


def _lone_surrogate(text: str) -> int | None:
    """Position of the first lone surrogate in ``text`` (not encodable as UTF-8), or ``None``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def validate_messages(index: int, messages: Sequence[dict[str, str]]) -> list[DataProblem]:
    """Every problem that stops ``messages`` (row ``index``) from being a trainable Phi-3 conversation."""
    if not messages:
        return [DataProblem(index, "messages", "empty conversation: expected at least a user and an assistant turn")]
    problems: list[DataProblem] = []
    expected = "user"
    for position, message in enumerate(messages):
        role, content = message["role"], message["content"]
        where = f"messages[{position}]"
        surrogate = _lone_surrogate(content)
        if surrogate is not None:
            problems.append(
                DataProblem(
                    index,
                    f"{where}.content",
                    f"not valid Unicode: lone surrogate {content[surrogate]!r} at character {surrogate} "
                    "(broken UTF-16, often from a bad \\uD800-style escape); the tokenizer cannot encode it",
                )
            )
        token = phi3_format.contains_control_token(content)
        if token:
            problems.append(
                DataProblem(
                    index,
                    f"{where}.content",
                    f"contains the Phi-3 control token {token!r}, which would fake a turn boundary; "
                    "remove it from the text",
                )
            )
        if role == "system":
            if position != 0:
                problems.append(DataProblem(index, f"{where}.role", "system message after the first turn"))
            continue
        if role != expected:
            problems.append(
                DataProblem(
                    index,
                    f"{where}.role",
                    f"conversation does not alternate: expected a {expected} turn, got {role}",
                )
            )
        if role == "assistant" and not content:
            problems.append(DataProblem(index, f"{where}.content", "empty assistant message"))
        expected = "assistant" if role == "user" else "user"
    if not any(message["role"] == "assistant" for message in messages):
        problems.append(DataProblem(index, "messages", "no assistant turn: there is nothing to learn from this row"))
    return problems
