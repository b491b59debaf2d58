"""The exceptions of the Hub publishing code. Messages say what to do and never contain a token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phi3_lora_hub.errors import Phi3LoraHubError

if TYPE_CHECKING:
    from phi3_lora_hub.hub.report import HubPushReport


class HubError(Phi3LoraHubError):
    """Something about the Hub (token, repository, network) stops publishing or resuming."""


class HubAuthError(HubError):
    """No token, a token the Hub rejects, or a token that cannot write to the repository."""


class HubPushError(HubError):
    """Raised after training when pushes failed and the failure policy is ``"raise"``; ``report`` says which."""

    def __init__(self, message: str, report: HubPushReport) -> None:
        super().__init__(message)
        self.report = report


class HubResumeError(HubError):
    """A checkpoint on the Hub cannot be used to resume training."""
