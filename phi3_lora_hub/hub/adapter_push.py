"""``push_adapter``: publish an adapter directory that already exists (``phi3-lora-hub push``), with a new card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3_lora_hub.hub.naming import validate_branch_name
from phi3_lora_hub.hub.publisher import HubPublisher
from phi3_lora_hub.hub.retry import RetryPolicy
from phi3_lora_hub.hub.settings import HubPushSettings, hub_default


@dataclass(frozen=True)
class AdapterPush:
    """Where an adapter was published."""

    repo_id: str
    repo_url: str
    commit: str
    """The commit on ``main``."""
    branch: str | None = None
    branch_commit: str | None = None

    @property
    def branch_url(self) -> str | None:
        return f"{self.repo_url}/tree/{self.branch}" if self.branch else None


def push_adapter(
    adapter_dir: str | Path,
    repo_id: str,
    *,
    branch: str | None = None,
    private: bool = hub_default("private"),
    token: str | None = None,
    endpoint: str | None = None,
    card_template: str | Path | None = None,
    card_license: str = hub_default("card_license"),
    branch_template: str = hub_default("branch_template"),
    timeout: float = hub_default("flush_timeout"),
    retry: RetryPolicy | None = None,
) -> AdapterPush:
    """Push the adapter in ``adapter_dir`` to ``main`` of ``repo_id`` (and to ``branch``), with a generated card.

    Only the adapter files are pushed (safetensors weights, configs, tokenizer, reports), never pickles. The card
    links the checkpoint branches already in the repository (named by ``branch_template``). Blocks for at most
    ``timeout`` seconds. Raises ``HubError`` subclasses on failure (``HubAuthError`` for token problems).
    """
    if branch is not None:
        validate_branch_name(branch)
        if branch == "main":
            branch = None
    settings = HubPushSettings(
        repo_id=repo_id,
        endpoint=endpoint,
        private=private,
        branch_template=branch_template,
        flush_timeout=timeout,
        on_failure="raise",
        card_template=None if card_template is None else str(card_template),
        card_license=card_license,
        retry=retry or RetryPolicy(),
    )
    publisher = HubPublisher(settings, token=token)
    record = publisher.push_directory(adapter_dir, branch=branch)
    assert record.commit is not None
    return AdapterPush(publisher.repo_id, publisher.repo_url, record.commit, record.branch, record.branch_commit)
