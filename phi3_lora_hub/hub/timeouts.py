"""HTTP timeouts for the plugin's own Hub requests, leaving every other user of ``huggingface_hub`` unchanged.

``huggingface_hub`` sends everything through one shared ``httpx2.Client`` built with ``timeout=None``, so a stalled
server stalls a push forever. :func:`install` adds one request hook to that client (and to every client its factory
builds later, composing with a factory the user installed). The hook does nothing unless the calling thread is
inside :func:`scoped`: only the plugin's worker thread gets timeouts, every other request is sent exactly as before.

Inside a scope, each request gets ``connect`` and ``read`` timeouts (``read`` also bounds writes), never longer than
the time left before the scope's deadline; once the deadline has passed, no new request is sent
(:class:`~phi3_lora_hub.hub.retry.PushAborted`). That is what lets the end-of-training flush keep its deadline.

Limitation: transfers that ``huggingface_hub`` runs in its own thread pool (several LFS files uploaded in parallel
on the legacy path) and inside ``hf_xet`` are not covered; the flush deadline still bounds how long training waits.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from phi3_lora_hub.hub.retry import PushAborted

_MARK = "_phi3_lora_hub_scoped_timeouts"
_install_lock = threading.Lock()


@dataclass(frozen=True)
class HttpTimeouts:
    """Per-request timeouts in seconds."""

    connect: float = 10.0
    read: float = 60.0
    """Longest wait for the next bytes of an answer (and for sending the next bytes of a request)."""

    def __post_init__(self) -> None:
        if self.connect <= 0 or self.read <= 0:
            raise ValueError(f"timeouts must be positive, got connect={self.connect}, read={self.read}")


class TimeoutScope:
    """The timeouts of one thread's requests, and an optional deadline (``time.monotonic()``) that can be set later."""

    def __init__(self, timeouts: HttpTimeouts, deadline: float | None = None) -> None:
        self.timeouts = timeouts
        self.deadline = deadline

    def for_request(self, existing: dict[str, Any] | None) -> dict[str, float]:
        """The timeouts for a request about to be sent (never longer than ones the request already has)."""
        connect, read = self.timeouts.connect, self.timeouts.read
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise PushAborted("the flush deadline has passed; the push was stopped")
            connect, read = min(connect, left), min(read, left)
        existing = existing or {}
        chosen = {"connect": connect, "read": read, "write": read, "pool": connect}
        return {key: value if existing.get(key) is None else min(value, existing[key]) for key, value in chosen.items()}


_current: contextvars.ContextVar[TimeoutScope | None] = contextvars.ContextVar("phi3_lora_hub_timeouts", default=None)


def _apply_scope(request: Any) -> None:
    """httpx2 request hook: give the request the timeouts of the calling thread's scope, if it has one."""
    scope = _current.get()
    if scope is not None:
        request.extensions = {**request.extensions, "timeout": scope.for_request(request.extensions.get("timeout"))}


def _add_hook(client: Any) -> Any:
    hooks = client.event_hooks["request"]  # the client's own list: appending changes the live client
    if _apply_scope not in hooks:
        hooks.append(_apply_scope)
    return client


def install() -> None:
    """Make the scoped timeouts work in this process (idempotent).

    Wraps ``huggingface_hub``'s client factory once, so clients it builds later (after ``close_session()``, which
    it calls itself after a connection error) carry the hook too. Installing replaces the live client, which is
    harmless before training starts but may fail requests other threads have in flight at that moment.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    with _install_lock:
        current = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) or _http.default_client_factory
        if not getattr(current, _MARK, False):

            def factory() -> Any:
                return _add_hook(current())

            setattr(factory, _MARK, True)
            set_client_factory(factory)
    ensure_hook()


def ensure_hook() -> None:
    """Put the hook on the live client if it lacks it (after someone installed another client factory)."""
    from huggingface_hub import get_session

    _add_hook(get_session())


@contextlib.contextmanager
def scoped(scope: TimeoutScope) -> Iterator[TimeoutScope]:
    """Requests sent by this thread inside the block get ``scope``'s timeouts."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
