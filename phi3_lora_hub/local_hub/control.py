"""``RemoteHub``: drive the faults, settings and request log of a local hub running in another process.

::

    hub = RemoteHub("http://127.0.0.1:8123", admin_token=root_credentials("hub-data").admin_token)
    hub.faults.fail("commit", status=500, count=2)
    hub.update_settings(regular_only=False)

Only the standard library is used, with proxies disabled: the control traffic stays on the loopback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from phi3_lora_hub.local_hub.faults import FaultInjector, FaultRule
from phi3_lora_hub.local_hub.requestlog import RequestRecord
from phi3_lora_hub.local_hub.rootdir import LocalHubError

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RemoteHub:
    """A client of the ``/_local_hub/`` control endpoints of the hub at ``url``."""

    def __init__(self, url: str, admin_token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._admin_token = admin_token
        self._timeout = timeout
        self.faults = RemoteFaults(self)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Send one control request and return its decoded JSON answer; ``LocalHubError`` on failure."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_local_hub/{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._admin_token}")
        request.add_header("Content-Type", "application/json")
        try:
            with _NO_PROXY.open(request, timeout=self._timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.headers.get("X-Error-Message") or error.reason
            message = f"local hub control {method} /_local_hub/{path} failed: {error.code} {detail}"
            raise LocalHubError(message) from None
        except urllib.error.URLError as error:
            raise LocalHubError(f"cannot reach the local hub at {self.url}: {error.reason}") from None

    def settings(self) -> dict[str, Any]:
        return self.call("GET", "settings")

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        """Change server switches, e.g. ``regular_only=False``; returns all settings."""
        return self.call("PATCH", "settings", changes)

    def requests(self) -> list[RequestRecord]:
        return [RequestRecord(**record) for record in self.call("GET", "requests")]

    def clear_requests(self) -> None:
        self.call("DELETE", "requests")


class RemoteFaults(FaultInjector):
    """``FaultInjector`` whose rules live in the remote server (same ``fail``/``delay``/``drop`` methods)."""

    def __init__(self, hub: RemoteHub) -> None:
        super().__init__()
        self._hub = hub

    def add(self, rule: FaultRule) -> FaultRule:
        spec = rule.to_json()
        for field in ("id", "hits"):
            spec.pop(field)
        return FaultRule(**self._hub.call("POST", "faults", spec))

    def remove(self, rule: FaultRule | int) -> None:
        rule_id = rule if isinstance(rule, int) else rule.id
        self._hub.call("DELETE", f"faults/{rule_id}")

    def clear(self) -> None:
        self._hub.call("DELETE", "faults")

    @property
    def rules(self) -> list[FaultRule]:
        return [FaultRule(**rule) for rule in self._hub.call("GET", "faults")]

    def take(self, method: str, path: str) -> FaultRule | None:
        raise LocalHubError("faults are applied by the server itself; take() is not available remotely")
