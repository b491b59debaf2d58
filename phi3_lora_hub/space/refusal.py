"""The one exception the Space shows to visitors: a request it turns down, with what to do instead."""

from __future__ import annotations

from pathlib import Path

from phi3_lora_hub.errors import Phi3LoraHubError

_SHOWN_CHARS = 80


class Refusal(Phi3LoraHubError):
    """A request the Space refuses. ``str(refusal)`` is written for the visitor and is shown as it is.

    Messages never hold a token, a server path or a stack trace; they quote visitor input only through
    :func:`quote`.
    """


def quote(text: object) -> str:
    """``text`` as it may appear in a message: one line, at most 80 characters, in backticks (no markup)."""
    shown = " ".join(str(text).split()).replace("`", "'")
    if len(shown) > _SHOWN_CHARS:
        shown = shown[: _SHOWN_CHARS - 1] + "…"
    return f"`{shown}`"


def public_model_name(name: str) -> str:
    """A model as a visitor may see it: a Hub id as it is, a local folder only by its last part (never a path of
    the server)."""
    name = str(name).strip().rstrip("/")
    if name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().is_dir():
        return f"a local folder named {quote(Path(name).name)}"
    return quote(name)
