"""What a request handler may read and change: the server's stores, settings, fault rules and request log.

Handlers are typed against this protocol rather than the ``HubApp`` that dispatches to them, so the endpoint
modules depend on the stores alone and ``app.py`` is the only module that knows every endpoint.
"""

from __future__ import annotations

from typing import Protocol

from phi3_lora_hub.local_hub.blobs import BlobStore
from phi3_lora_hub.local_hub.faults import FaultInjector
from phi3_lora_hub.local_hub.lfs import MultipartSessions, UrlSigner
from phi3_lora_hub.local_hub.repos import RepoStore
from phi3_lora_hub.local_hub.requestlog import RequestLog
from phi3_lora_hub.local_hub.settings import HubSettings


class HubState(Protocol):
    """The parts of a running local Hub that endpoints use."""

    blobs: BlobStore
    repos: RepoStore
    settings: HubSettings
    faults: FaultInjector
    signer: UrlSigner
    multipart: MultipartSessions
    log: RequestLog
