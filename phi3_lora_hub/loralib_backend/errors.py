"""Errors specific to the loralib backend. Each message says what is wrong and what to do about it."""

from __future__ import annotations

from phi3_lora_hub.errors import Phi3LoraHubError


class NotRepresentableError(Phi3LoraHubError, ValueError):
    """A PEFT adapter (or loralib state dict) has a feature the other format cannot express exactly."""


class LoraKeyMismatchError(Phi3LoraHubError, ValueError):
    """A loralib state dict does not fit the patched model: missing, unexpected or wrongly shaped LoRA tensors.

    ``report`` is the :class:`~phi3_lora_hub.loralib_backend.loading.LoadReport` that lists every problem.
    """

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report
