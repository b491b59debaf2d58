"""``HubPushSettings``: every choice of the Hub publisher, validated when it is made (not at the first push)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.hub.naming import DEFAULT_BRANCH_TEMPLATE, validate_branch_template
from phi3_lora_hub.hub.retry import RetryPolicy
from phi3_lora_hub.hub.timeouts import HttpTimeouts

OnFailure = Literal["warn", "raise"]
ON_FAILURE: tuple[OnFailure, ...] = ("warn", "raise")


@dataclass(frozen=True)
class HubPushSettings:
    """How checkpoints are published. The token is not a setting: it never travels with configurations."""

    repo_id: str
    """``namespace/name`` of the model repository (a bare ``name`` goes to the token owner's namespace)."""
    endpoint: str | None = None
    """Hub address; ``None`` uses ``HF_ENDPOINT`` (default ``https://huggingface.co``)."""
    private: bool = False
    """Create the repository as private (an existing repository keeps its visibility)."""
    branch_template: str = DEFAULT_BRANCH_TEMPLATE
    """Branch of each checkpoint; ``{step}`` is replaced by the step. Letters, digits, ``.``, ``_``, ``-`` only."""
    push_resumable_state: bool = False
    """Also push the whole checkpoint (optimizer, scheduler, RNG state) to ``<branch>/checkpoint/``, followed by a
    completion marker, so that ``resume_from_hub`` can continue the run on another machine."""
    flush_timeout: float = 600.0
    """At the end of training, wait at most this many seconds for pushes still queued or running."""
    on_failure: OnFailure = "warn"
    """When a push did not reach the Hub: ``warn`` logs it (the report says which), ``raise`` raises
    ``HubPushError`` after training."""
    card_template: str | None = None
    """A Jinja model card template of your own (default: ``model_card_templates/phi3_lora_adapter.md.j2``)."""
    card_license: str = "mit"
    """The ``license`` of the card metadata. Phi-3 Mini and the default dataset are MIT-licensed; set what your
    data's license requires."""
    timeouts: HttpTimeouts = field(default_factory=HttpTimeouts)
    """Connect and read timeouts of each request (the read timeout never exceeds ``flush_timeout``)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Attempts and backoff of every request of a push, the commit included."""

    def __post_init__(self) -> None:
        if not isinstance(self.repo_id, str) or not self.repo_id.strip("/") or self.repo_id.count("/") > 1:
            raise ConfigError(f"Hub repo id must be 'namespace/name' or 'name', got {self.repo_id!r}.")
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(self.repo_id)
        except HFValidationError as error:
            raise ConfigError(f"Hub repo id {self.repo_id!r} is not valid: {error}") from None
        validate_branch_template(self.branch_template)
        if self.on_failure not in ON_FAILURE:
            raise ConfigError(f"on_failure must be one of {list(ON_FAILURE)}, got {self.on_failure!r}.")
        if not self.flush_timeout > 0:
            raise ConfigError(f"flush_timeout must be a positive number of seconds, got {self.flush_timeout!r}.")
        if self.card_template is not None and not Path(self.card_template).expanduser().is_file():
            raise ConfigError(f"Model card template {self.card_template!r} does not exist.")

    @property
    def request_timeouts(self) -> HttpTimeouts:
        """The per-request timeouts, with reads bounded by the flush deadline's length."""
        return HttpTimeouts(
            connect=min(self.timeouts.connect, self.flush_timeout), read=min(self.timeouts.read, self.flush_timeout)
        )


def hub_default(name: str) -> Any:
    """The default of the ``HubPushSettings`` field ``name`` (for settings built from these, e.g. the recipe's)."""
    (declared,) = (candidate for candidate in dataclasses.fields(HubPushSettings) if candidate.name == name)
    if declared.default is dataclasses.MISSING:
        raise ValueError(f"HubPushSettings.{name} has no plain default.")
    return declared.default
