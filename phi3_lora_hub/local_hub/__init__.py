"""A local Hugging Face Hub server: the offline default of phi3-lora-hub, and the Hub of its tests.

It speaks the part of the Hub HTTP API that the unmodified ``huggingface_hub`` client, ``transformers`` and
``peft`` use: whoami, create/delete repo (models, datasets, Spaces), repo info at a revision, preupload
(regular or LFS upload mode), the LFS batch API and transfers (single and multipart), NDJSON commits with
40-hex ids and parent checks, branches, tags and pull-request refs, commit and tree listings (paginated),
paths-info, file resolve/download, README metadata validation. Every error carries ``X-Error-Code``.
Content persists under a root directory and survives restarts; writes are atomic. Each root has its own random
tokens (``root_credentials``); only loopback ``Host`` names are answered; hostile input gets a 4xx.

::

    from phi3_lora_hub.local_hub import LocalHub

    with LocalHub(root="hub-data", port=0) as hub:
        print(hub.url)                             # export HF_ENDPOINT=<this> before importing huggingface_hub
        print(hub.write_token)                     # export HF_TOKEN=<this> (random, kept in the root, mode 0600)
        hub.faults.fail("commit", status=500)      # the next commit answers 500
        hub.settings.regular_only = False          # LFS upload mode (clients need HF_HUB_DISABLE_XET=1)

The same code that pushes here pushes to the real Hub: only ``HF_ENDPOINT`` and the token differ.
"""

from phi3_lora_hub.local_hub.auth import Role, User
from phi3_lora_hub.local_hub.control import RemoteFaults, RemoteHub
from phi3_lora_hub.local_hub.faults import ENDPOINTS, FaultInjector, FaultRule
from phi3_lora_hub.local_hub.requestlog import RequestRecord
from phi3_lora_hub.local_hub.rootdir import DEFAULT_USER, LocalHubError, RootCredentials, root_credentials
from phi3_lora_hub.local_hub.server import LocalHub
from phi3_lora_hub.local_hub.settings import HubSettings

__all__ = [
    "DEFAULT_USER",
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
    "RootCredentials",
    "User",
    "root_credentials",
]
