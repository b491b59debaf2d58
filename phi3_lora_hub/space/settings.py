"""The Space's configuration: environment variables, over an optional ``space_config.json`` written by deploy.

Every setting has an environment variable (``PHI3_SPACE_*``; the token is the Space secret ``HF_TOKEN``), so a
Space is configured from its Settings page and a local run from the command line. ``phi3-lora-hub space deploy``
writes the non-secret values into ``space_config.json`` next to ``app.py``; a variable set on the Space wins over
the file. The token is never written anywhere and never part of ``repr()`` or :meth:`SpaceSettings.describe`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.space.refusal import public_model_name

DEFAULT_BASE_MODEL = "microsoft/Phi-3-mini-4k-instruct"
CONFIG_FILE = "space_config.json"
TOKEN_VARIABLE = "HF_TOKEN"
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class SpaceSettings:
    """What the Space serves and the limits it enforces. Build it with :meth:`from_env`."""

    base_model: str = DEFAULT_BASE_MODEL
    """Hub id or local directory of the Phi-3 base model, loaded once."""
    base_revision: str | None = None
    """Branch, tag or (best) 40-hex commit of the base model."""
    base_aliases: tuple[str, ...] = ()
    """Other names an adapter's ``base_model_name_or_path`` may give for the base (mirrors, local copies)."""
    adapters: tuple[str, ...] = ()
    """Adapter repos (``namespace/name``) offered in the pickers; each is allowed."""
    allowlist: tuple[str, ...] = ()
    """More repos a visitor may type: ``namespace/name`` or ``namespace/*``."""
    token: str | None = field(default=None, repr=False, compare=False)
    """The Space's ``HF_TOKEN`` secret: reads private adapters, writes votes. Never shown."""
    data_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "phi3-lora-hub-space")
    """Local votes (``votes/``) and votes fetched from the Hub (``hub-votes/``)."""
    votes_repo: str | None = None
    """A Hub dataset repo the votes are appended to in the background (needs a token with write access)."""
    votes_private: bool = True
    """Whether the votes dataset is created private (votes hold whole conversations)."""
    votes_every_minutes: float = 5.0
    export_transcripts: bool = False
    """Whether "Export votes" hands visitors the conversations too (other visitors' prompts); off by default."""
    max_loaded_adapters: int = 4
    """Adapters kept in memory at once; the least recently used is unloaded beyond this (at least 2)."""
    max_adapter_mb: float = 512.0
    """Largest ``adapter_model.safetensors`` accepted, in MB."""
    max_prompt_chars: int = 4000
    max_new_tokens: int = 512
    """Cap on the ``max new tokens`` setting (the slider's maximum, enforced on the server too)."""
    max_turns: int = 10
    """User turns per conversation before it must be cleared."""
    max_context_tokens: int = 4096
    """Prompt plus answer must fit in this many tokens (and in the base model's context)."""
    preload: bool = True
    """Load the offered adapters (``main``, up to ``max_loaded_adapters``) in the background at start, so the
    first visitors do not wait for them."""
    queue_size: int | None = None
    """Requests waiting in the queue beyond this are turned away; ``None``: sized from the hardware
    (:func:`phi3_lora_hub.space.launch.default_queue_size`)."""
    dtype: str = "auto"
    """``auto`` (bfloat16 where supported, float16 on older GPUs, bfloat16 on CPU), or a torch dtype name."""
    title: str = "Phi-3 LoRA side by side"

    def __post_init__(self) -> None:
        if self.max_loaded_adapters < 2:
            raise ConfigError(
                "PHI3_SPACE_MAX_LOADED must be at least 2: both panes may show a different adapter at once."
            )
        if self.dtype not in DTYPES:
            raise ConfigError(f"PHI3_SPACE_DTYPE must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        for name in ("max_adapter_mb", "max_prompt_chars", "max_new_tokens", "max_turns", "max_context_tokens"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_ENV_OF[name]} must be positive, got {getattr(self, name)!r}.")
        if self.queue_size is not None and self.queue_size <= 0:
            raise ConfigError(f"PHI3_SPACE_QUEUE_SIZE must be positive, got {self.queue_size!r}.")
        if self.votes_every_minutes <= 0:
            raise ConfigError(f"PHI3_SPACE_VOTES_EVERY must be positive, got {self.votes_every_minutes!r}.")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, config_file: str | Path | None = None
    ) -> SpaceSettings:
        """Settings from ``environ`` (default ``os.environ``) over ``config_file`` (a ``space_config.json``).

        Unset or empty variables keep their default. A malformed value raises ``ConfigError`` naming the
        variable. A token found in the config file is refused: tokens belong in the ``HF_TOKEN`` secret.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        if config_file is not None and Path(config_file).is_file():
            values.update(_read_config_file(Path(config_file)))
        values.update({key: value for key, value in environ.items() if key in _FIELD_OF and value.strip()})
        kwargs: dict[str, Any] = {}
        for variable, raw in values.items():
            name = _FIELD_OF[variable]
            kwargs[name] = _parse(name, variable, raw)
        token = environ.get(TOKEN_VARIABLE, "").strip()
        return cls(**kwargs, token=token or None)

    def to_environment(self) -> dict[str, str]:
        """The settings as ``PHI3_SPACE_*`` variables (token excluded), e.g. for ``space_config.json``."""
        variables = {}
        defaults = SpaceSettings()
        for item in fields(self):
            if item.name == "token":
                continue
            value = getattr(self, item.name)
            if item.name == "data_dir" or (item.name != "base_model" and value == getattr(defaults, item.name)):
                continue
            variables[_ENV_OF[item.name]] = _format(value)
        return variables

    def describe(self) -> dict[str, str]:
        """What a visitor may see about the configuration (the token only as set / not set, a local base model
        folder only by its last part)."""
        return {
            "base model": public_model_name(self.base_model)
            + (f" @ {self.base_revision}" if self.base_revision else ""),
            "adapters offered": ", ".join(self.adapters) or "(none)",
            "also allowed": ", ".join(self.allowlist) or "(nothing else)",
            "adapters kept in memory": str(self.max_loaded_adapters),
            "largest adapter": f"{self.max_adapter_mb:g} MB",
            "prompt limit": f"{self.max_prompt_chars} characters, {self.max_turns} turns",
            "max new tokens": str(self.max_new_tokens),
            "votes saved to": self.votes_repo or "this machine only",
            "Hub token": "set" if self.token else "not set",
        }


_ENV_OF = {
    "base_model": "PHI3_SPACE_BASE_MODEL",
    "base_revision": "PHI3_SPACE_BASE_REVISION",
    "base_aliases": "PHI3_SPACE_BASE_ALIASES",
    "adapters": "PHI3_SPACE_ADAPTERS",
    "allowlist": "PHI3_SPACE_ALLOWLIST",
    "data_dir": "PHI3_SPACE_DATA_DIR",
    "votes_repo": "PHI3_SPACE_VOTES_REPO",
    "votes_private": "PHI3_SPACE_VOTES_PRIVATE",
    "votes_every_minutes": "PHI3_SPACE_VOTES_EVERY",
    "preload": "PHI3_SPACE_PRELOAD",
    "export_transcripts": "PHI3_SPACE_EXPORT_TRANSCRIPTS",
    "max_loaded_adapters": "PHI3_SPACE_MAX_LOADED",
    "max_adapter_mb": "PHI3_SPACE_MAX_ADAPTER_MB",
    "max_prompt_chars": "PHI3_SPACE_MAX_PROMPT_CHARS",
    "max_new_tokens": "PHI3_SPACE_MAX_NEW_TOKENS",
    "max_turns": "PHI3_SPACE_MAX_TURNS",
    "max_context_tokens": "PHI3_SPACE_MAX_CONTEXT_TOKENS",
    "queue_size": "PHI3_SPACE_QUEUE_SIZE",
    "dtype": "PHI3_SPACE_DTYPE",
    "title": "PHI3_SPACE_TITLE",
}
"""Field name -> environment variable."""
_FIELD_OF = {variable: name for name, variable in _ENV_OF.items()}
ENVIRONMENT_VARIABLES: tuple[str, ...] = (*_ENV_OF.values(), TOKEN_VARIABLE)

_LISTS = {"base_aliases", "adapters", "allowlist"}
_INTS = {"max_loaded_adapters", "max_prompt_chars", "max_new_tokens", "max_turns", "max_context_tokens", "queue_size"}
_FLOATS = {"max_adapter_mb", "votes_every_minutes"}
_BOOLS = {"votes_private", "preload", "export_transcripts"}


def split_list(raw: str) -> tuple[str, ...]:
    """``"a, b\\nc"`` -> ``("a", "b", "c")``: items separated by commas or newlines, blanks dropped."""
    return tuple(item.strip() for item in raw.replace("\n", ",").split(",") if item.strip())


def _parse(name: str, variable: str, raw: str) -> Any:
    raw = raw.strip()
    try:
        if name in _LISTS:
            return split_list(raw)
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number, got {raw!r}.") from None
    if name in _BOOLS:
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"{variable} must be true or false, got {raw!r}.")
        return raw.lower() in ("1", "true", "yes")
    if name == "data_dir":
        return Path(raw).expanduser()
    return raw


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_config_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is not a readable JSON object: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object of PHI3_SPACE_* settings.")
    if TOKEN_VARIABLE in data:
        raise ConfigError(f"{path} holds {TOKEN_VARIABLE}: remove it and set the token as a Space secret instead.")
    unknown = sorted(set(data) - set(_FIELD_OF))
    if unknown:
        raise ConfigError(f"{path}: unknown settings {', '.join(unknown)}; known: {', '.join(_FIELD_OF)}.")
    return {key: _format(tuple(value)) if isinstance(value, list) else str(value) for key, value in data.items()}
