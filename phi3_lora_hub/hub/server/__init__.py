"""A local Hugging Face Hub server: the offline default of phi3-lora-hub, and the Hub of its tests.

It speaks the part of the Hub HTTP API that the unmodified ``huggingface_hub`` client, ``transformers`` and
``peft`` use: whoami, create/delete repo (models, datasets, Spaces), repo info at a revision, preupload
(regular or LFS upload mode), the LFS batch API and transfers (single and multipart), NDJSON commits with
40-hex ids and parent checks, branches, tags and pull-request refs, commit and tree listings (paginated),
paths-info, file resolve/download, README metadata validation. Every error carries ``X-Error-Code``.
Content persists under a root directory and survives restarts; writes are atomic.

::

    from phi3_lora_hub.hub.server import LocalHub

    with LocalHub(root="hub-data", port=0) as hub:
        print(hub.url)                             # export HF_ENDPOINT=<this> before importing huggingface_hub
        hub.faults.fail("commit", status=500)      # the next commit answers 500
        hub.settings.regular_only = False          # LFS upload mode (clients need HF_HUB_DISABLE_XET=1)

The same code that pushes here pushes to the real Hub: only ``HF_ENDPOINT`` and the token differ.
"""

from phi3_lora_hub.hub.server.auth import Role, User
from phi3_lora_hub.hub.server.control import RemoteFaults, RemoteHub
from phi3_lora_hub.hub.server.faults import ENDPOINTS, FaultInjector, FaultRule
from phi3_lora_hub.hub.server.requestlog import RequestRecord
from phi3_lora_hub.hub.server.server import (
    DEFAULT_ADMIN_TOKEN,
    DEFAULT_READ_TOKEN,
    DEFAULT_USER,
    DEFAULT_WRITE_TOKEN,
    LocalHub,
    LocalHubError,
    default_tokens,
)
from phi3_lora_hub.hub.server.settings import HubSettings

__all__ = [
    "DEFAULT_ADMIN_TOKEN",
    "DEFAULT_READ_TOKEN",
    "DEFAULT_USER",
    "DEFAULT_WRITE_TOKEN",
    "ENDPOINTS",
    "FaultInjector",
    "FaultRule",
    "HubSettings",
    "LocalHub",
    "LocalHubError",
    "RemoteFaults",
    "RemoteHub",
    "RequestRecord",
    "Role",
    "User",
    "default_tokens",
]
