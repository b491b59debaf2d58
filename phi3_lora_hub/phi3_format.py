"""The Phi-3 chat format: special tokens, rendering, parsing and stop tokens.

Everything that knows what a Phi-3 conversation looks like as text lives here, so the training masks, the chat
helper, the Space and the evaluation all agree byte for byte. The format is the one of the current
``microsoft/Phi-3-mini-4k-instruct`` chat template::

    <|system|>\\n{system}<|end|>\\n<|user|>\\n{user}<|end|>\\n<|assistant|>\\n{assistant}<|end|>\\n<|endoftext|>

Generation prompts end with ``<|assistant|>\\n`` instead of the final ``<|endoftext|>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")

BOS = "<s>"
UNK = "<unk>"
EOS = "<|endoftext|>"
END = "<|end|>"
ROLE_TOKENS: dict[Role, str] = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
PLACEHOLDERS = tuple(f"<|placeholder{i}|>" for i in range(1, 7))

# Token ids of the real Phi-3-mini tokenizer, in id order (32000..32010).
ADDED_TOKENS: tuple[str, ...] = (
    EOS,
    "<|assistant|>",
    *PLACEHOLDERS[:4],
    "<|system|>",
    END,
    *PLACEHOLDERS[4:],
    "<|user|>",
)
CONTROL_TOKENS: tuple[str, ...] = (BOS, "</s>", UNK, *ADDED_TOKENS)

# Generation must stop on all three: stopping on <|endoftext|> alone runs past <|end|>.
STOP_TOKENS: tuple[str, ...] = (EOS, "<|assistant|>", END)

# The chat template of the real tokenizer (tokenizer_config.json of Phi-3-mini-4k-instruct), so a tokenizer built
# here renders exactly like the real one.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

_CONTROL_PATTERN = re.compile("|".join(re.escape(t) for t in sorted(CONTROL_TOKENS, key=len, reverse=True)))
_TURN_PATTERN = re.compile(r"<\|(system|user|assistant)\|>")


@dataclass(frozen=True)
class Span:
    """A half-open character range ``[start, end)`` of a rendered conversation."""

    start: int
    end: int


@dataclass(frozen=True)
class RenderedChat:
    """A conversation rendered to Phi-3 text, with where each assistant answer sits.

    ``assistant_spans`` cover each assistant message's content plus the ``<|end|>`` closing it: exactly the
    characters the model should learn to produce.
    """

    text: str
    assistant_spans: tuple[Span, ...]


def render(messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = False) -> RenderedChat:
    """Render ``messages`` (dicts with ``role`` and string ``content``) in the Phi-3 chat format.

    Without a generation prompt the text ends with ``<|endoftext|>``, as the real template does; with one it ends
    with ``<|assistant|>\\n`` so the model writes the next answer.
    """
    parts: list[str] = []
    spans: list[Span] = []
    length = 0
    for message in messages:
        role = message["role"]
        header = ROLE_TOKENS[role] + "\n"
        parts.append(header)
        length += len(header)
        content_end = length + len(message["content"]) + len(END)
        if role == "assistant":
            spans.append(Span(length, content_end))
        parts.append(message["content"] + END + "\n")
        length = content_end + 1
    parts.append(ROLE_TOKENS["assistant"] + "\n" if add_generation_prompt else EOS)
    return RenderedChat("".join(parts), tuple(spans))


def contains_control_token(text: str) -> str | None:
    """Return the first Phi-3 control token found in ``text``, or ``None``."""
    match = _CONTROL_PATTERN.search(text)
    return match.group(0) if match else None


def parse(text: str) -> list[dict[str, str]]:
    """Parse text already written in the Phi-3 chat format back into ``messages``.

    Content is stripped of surrounding whitespace, so loosely written data such as
    ``"<|user|>\\nQ <|end|>\\n<|assistant|> \\nA <|end|>"`` becomes clean turns. A leading ``<s>`` and a trailing
    ``<|endoftext|>`` are accepted. Raises ``ValueError`` when the text is not in the format.
    """
    body = text.strip()
    if body.startswith(BOS):
        body = body[len(BOS) :].lstrip()
    if body.endswith(EOS):
        body = body[: -len(EOS)].rstrip()
    if not body:
        raise ValueError("the text is empty")
    headers = list(_TURN_PATTERN.finditer(body))
    if not headers or headers[0].start() != 0:
        raise ValueError("the text does not start with <|system|>, <|user|> or <|assistant|>")
    messages: list[dict[str, str]] = []
    for index, header in enumerate(headers):
        stop = headers[index + 1].start() if index + 1 < len(headers) else len(body)
        chunk = body[header.end() : stop].rstrip()
        if not chunk.endswith(END):
            raise ValueError(f"turn {index + 1} ({header.group(1)}) is not closed by {END}")
        content = chunk[: -len(END)].strip()
        stray = contains_control_token(content)
        if stray:
            raise ValueError(f"turn {index + 1} ({header.group(1)}) contains the control token {stray}")
        messages.append({"role": header.group(1), "content": content})
    return messages
