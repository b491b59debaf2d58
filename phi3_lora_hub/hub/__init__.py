"""Everything that talks to the Hugging Face Hub as a client.

The local Hub server is an application of its own (``phi3_lora_hub.local_hub``); nothing here imports it.

Publishing checkpoints while training runs:

- :class:`HubPushCallback` (``push_callback``): the ``TrainerCallback``; :class:`HubPublisher` (``publisher``)
  does the work: ``staging`` (immutable copies), ``worker`` (one background thread, coalescing, flush deadline),
  ``uploader`` (commits and branches, idempotent), ``retry`` (classifying errors, backoff), ``timeouts`` (HTTP
  timeouts for the plugin's requests only), ``tokens``, ``naming`` (branch names), ``files`` (what is pushed),
  ``marker`` (completion marker of resumable checkpoints), ``report`` (:class:`HubPushReport`).
- :func:`resume_checkpoint_from_hub` (``resume``): download the newest complete resumable checkpoint.
- :func:`push_adapter` (``adapter_push``): publish an existing adapter directory (``phi3-lora-hub push``).

Heavy imports happen on first use.
"""

from __future__ import annotations

from phi3_lora_hub.lazy_exports import lazy_exports

_EXPORTS = {
    "HubPushCallback": "push_callback",
    "HubPublisher": "publisher",
    "HubPushSettings": "settings",
    "HubPushReport": "report",
    "CheckpointPush": "report",
    "HttpTimeouts": "timeouts",
    "RetryPolicy": "retry",
    "HubError": "errors",
    "HubAuthError": "errors",
    "HubPushError": "errors",
    "HubResumeError": "errors",
    "HubCheckpoint": "resume",
    "resume_checkpoint_from_hub": "resume",
    "newest_complete_checkpoint": "resume",
    "push_adapter": "adapter_push",
    "AdapterPush": "adapter_push",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
