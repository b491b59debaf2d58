"""A bounded, thread-safe log of the requests a server answered, for assertions in tests.

Records hold the method, the path (signatures of pre-signed URLs redacted), the status, the user *name* and
timing; never a token or a request body.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

_SIGNATURE_RE = re.compile(r"([?&]sig=)[^&]*")


def redact(target: str) -> str:
    """``target`` with the value of any ``sig`` query parameter replaced by ``REDACTED``."""
    return _SIGNATURE_RE.sub(r"\1REDACTED", target)


@dataclass(frozen=True)
class RequestRecord:
    """One answered (or dropped) request."""

    method: str
    path: str
    """The raw request path and query, as sent (percent-encoding kept)."""
    status: int | None
    """The status sent; ``None`` when the connection was dropped before a status line."""
    user: str | None
    """The authenticated user's name; ``None`` for anonymous or rejected requests."""
    duration_s: float
    request_id: str | None = None
    """The client's ``X-Request-Id``/``X-Amzn-Trace-Id``, which ``huggingface_hub`` puts in its error messages."""
    fault: int | None = None
    """The id of the fault rule applied to the request, if any."""
    error_code: str | None = None
    """The ``X-Error-Code`` sent with an error status (``None`` for successes, and for bare 404s)."""

    @property
    def route(self) -> str:
        """The path without its query string."""
        return self.path.split("?", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """The last ``capacity`` request records, oldest first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=capacity)
        self._guard = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._guard:
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        with self._guard:
            return list(self._records)

    def clear(self) -> None:
        with self._guard:
            self._records.clear()
