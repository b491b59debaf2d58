"""HTTP timeouts for the plugin's own Hub requests, leaving every other user of ``huggingface_hub`` unchanged.

``huggingface_hub`` sends everything through one shared ``httpx2.Client`` built with ``timeout=None``, so a stalled
server stalls a push forever. :func:`install` makes every client ``huggingface_hub`` builds carry one request hook.
The hook does nothing unless the calling thread is inside :func:`scoped`: only the plugin's worker thread gets
timeouts, every other request is sent exactly as before.

``huggingface_hub`` has no public getter for the factory in place, so the package installs its own: it builds
clients like the one ``huggingface_hub`` was using (same hooks, headers, redirects, authentication), plus the hook.
A client's transport (proxy, certificates) is private to ``httpx2``, so it cannot be copied: a user who set one up
passes their factory to ``install(base_factory=...)`` before training. A user's own ``set_client_factory`` called
later replaces ours; :func:`ensure_hook`, run before each of the publisher's attempts, then puts the hook on the
live client, and the next :func:`install` installs ours again around a copy of it.

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
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phi3_lora_hub.hub.retry import PushAborted

if TYPE_CHECKING:
    import httpx2

# httpx2 and huggingface_hub are imported where they are used: the settings (and through them the recipe's config)
# import this module for HttpTimeouts, and must stay cheap to import.

ClientFactory = Callable[[], "httpx2.Client"]

_install_lock = threading.Lock()
_ours: weakref.WeakSet[httpx2.Client] = weakref.WeakSet()
"""The clients our factory built: ``huggingface_hub`` has no public getter for the factory in place, so whether
it is still ours is told by the live client."""


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


def _add_hook(client: httpx2.Client) -> httpx2.Client:
    hooks = client.event_hooks["request"]  # the client's own list: appending changes the live client
    if _apply_scope not in hooks:
        hooks.append(_apply_scope)
    return client


def like(template: httpx2.Client) -> ClientFactory:
    """A factory of clients configured like ``template`` through ``httpx2.Client``'s public settings.

    The transport (proxy, certificates, retries) is not among them: httpx2 keeps it private.
    """
    import httpx2

    def factory() -> httpx2.Client:
        return httpx2.Client(
            auth=template.auth,
            params=template.params,
            headers=template.headers,
            cookies=template.cookies,
            timeout=template.timeout,
            follow_redirects=template.follow_redirects,
            max_redirects=template.max_redirects,
            event_hooks={name: list(hooks) for name, hooks in template.event_hooks.items()},
            base_url=template.base_url,
            trust_env=template.trust_env,
        )

    return factory


def install(base_factory: ClientFactory | None = None) -> None:
    """Make the scoped timeouts work in this process (idempotent).

    Unless the live client is already one of ours, installs a client factory building ``base_factory``'s clients
    plus the hook, or, without one, clients like the live one: clients ``huggingface_hub`` builds later (after
    ``close_session()``, which it calls itself after a connection error) carry the hook too. Installing replaces
    the live client, which is harmless before training starts but may fail requests other threads have in flight
    at that moment.
    """
    from huggingface_hub import get_session, set_client_factory

    with _install_lock:
        live = get_session()
        if live not in _ours:
            base = base_factory or like(live)

            def factory() -> httpx2.Client:
                client = _add_hook(base())
                _ours.add(client)
                return client

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
