"""What went wrong with a Hub request, whether trying again can help, and how long to wait before it does.

Errors reaching a background push are a mix of ``HfHubHTTPError`` (with a status), ``httpx2`` transport errors
(timeouts, refused or dropped connections) and ``builtins.ConnectionError`` raised by ``hf_xet``; every one is
turned into a :class:`Failure` with a one-line, token-free cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from phi3_lora_hub.errors import Phi3LoraHubError

T = TypeVar("T")
FailureKind = Literal["transient", "conflict", "permanent"]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_CAUSE = 300
MAX_SERVER_WAIT = 300.0
"""The longest ``Retry-After`` honoured (the flush deadline cuts any wait short anyway)."""


class PushAborted(Exception):
    """The push was stopped on purpose (flush deadline reached, or the publisher is closing)."""


@dataclass(frozen=True)
class Failure:
    """One failed request, classified."""

    kind: FailureKind
    """``transient``: may work if tried again; ``conflict``: the branch moved (412), refresh and try again;
    ``permanent``: trying again cannot help (bad token, missing repository, invalid request, local file error)."""
    cause: str
    """One line for logs and reports, without the token."""
    status: int | None = None
    request_id: str | None = None
    ambiguous: bool = False
    """The request may have been applied although no answer came back (read timeout, dropped connection)."""
    retry_after: float | None = None
    """Seconds the server asked the client to wait before trying again (``Retry-After``, or the ``ratelimit``
    header of a 429 with nothing remaining); the retry waits at least that long."""

    def describe(self) -> str:
        return f"{self.cause} (request id {self.request_id})" if self.request_id else self.cause


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff, for every request of a push (the commit included)."""

    max_attempts: int = 5
    """Attempts per request, the first one included."""
    initial_backoff: float = 1.0
    """Seconds before the second attempt; doubled for each further one."""
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("backoff times must satisfy 0 <= initial_backoff <= max_backoff")

    def delays(self) -> Iterator[float]:
        """The waits between attempts: ``max_attempts - 1`` values."""
        delay = self.initial_backoff
        for _ in range(self.max_attempts - 1):
            yield min(delay, self.max_backoff)
            delay *= 2


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= _MAX_CAUSE else line[: _MAX_CAUSE - 3] + "..."


def _request_id(error: BaseException) -> str | None:
    request_id = getattr(error, "request_id", None)
    if request_id:
        return str(request_id)
    # The id the client generated is in the request: HfHubHTTPError keeps it on its response (its own
    # .request is reset by httpx2's constructor), httpx2 transport errors on .request.
    response = getattr(error, "response", None)
    for source in (response, error):
        try:
            headers = source.request.headers  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            continue
        found = headers.get("X-Amzn-Trace-Id") or headers.get("x-request-id")
        if found:
            return str(found)
    return None


def _server_wait(response: object) -> float | None:
    """How long the server asked to wait before the next try, as ``huggingface_hub``'s own backoff reads it."""
    from huggingface_hub.utils import parse_ratelimit_headers

    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    if getattr(response, "status_code", None) == 429:
        info = parse_ratelimit_headers(headers)
        if info is not None and info.remaining == 0:
            return float(min(info.reset_in_seconds, MAX_SERVER_WAIT))
    value = str(headers.get("Retry-After") or "").strip()
    return float(min(int(value), MAX_SERVER_WAIT)) if value.isdigit() else None  # an HTTP-date is not honoured


def failure_of(error: BaseException, redact: Callable[[str], str] = lambda text: text) -> Failure:
    """Classify ``error`` raised by a ``huggingface_hub`` call (or by the push code itself)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    request_id = _request_id(error)
    name = type(error).__name__
    if isinstance(error, PushAborted):
        return Failure("permanent", redact(str(error)))
    if isinstance(error, OfflineModeIsEnabled):  # a ConnectionError subclass: test it before ConnectionError
        return Failure("permanent", "HF_HUB_OFFLINE=1 is set, so no request is sent: unset it to push")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        detail = error.server_message or _first_line(str(error))
        cause = redact(f"HTTP {status}: {_first_line(detail)}")
        if status == 412:
            return Failure("conflict", cause, status, request_id)
        if status in RETRY_STATUSES:
            return Failure("transient", cause, status, request_id, retry_after=_server_wait(error.response))
        return Failure("permanent", cause, status, request_id)
    if isinstance(error, httpx2.TimeoutException):
        # A request that was sent and then timed out may have been applied; a connect timeout was not.
        ambiguous = not isinstance(error, (httpx2.ConnectTimeout, httpx2.PoolTimeout))
        return Failure(
            "transient", redact(f"{name} (no answer in time): {_first_line(str(error))}"), None, request_id, ambiguous
        )
    if isinstance(error, httpx2.ConnectError):
        return Failure("transient", redact(f"cannot connect: {_first_line(str(error))}"), None, request_id)
    if isinstance(error, (httpx2.NetworkError, httpx2.RemoteProtocolError)):
        return Failure(
            "transient", redact(f"connection lost ({name}): {_first_line(str(error))}"), None, request_id, True
        )
    if isinstance(error, ConnectionError):  # hf_xet raises the builtin for every transfer problem
        hint = ""
        if "xet" in str(error).lower() or "501" in str(error):
            hint = " (if this server does not speak Xet, set HF_HUB_DISABLE_XET=1)"
        return Failure(
            "transient", redact(f"upload failed ({name}): {_first_line(str(error))}{hint}"), None, request_id, True
        )
    if isinstance(error, RuntimeError) and error.__cause__ is not None:
        # huggingface_hub wraps LFS transfer errors: "Error while uploading 'x' to the Hub."
        inner = failure_of(error.__cause__, redact)
        return Failure(
            inner.kind,
            redact(f"{_first_line(str(error))} {inner.cause}"),
            inner.status,
            inner.request_id or request_id,
            inner.ambiguous,
            inner.retry_after,
        )
    return Failure("permanent", redact(f"{name}: {_first_line(str(error))}"), None, request_id)


class PushFailed(Exception):
    """A request gave up for good; ``failure`` is its last error, classified and redacted."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure


class Stopper:
    """Lets retries wait between attempts; subclasses stop them (``worker.StopSignal`` at the flush deadline)."""

    def check(self) -> None:
        """Raise :class:`PushAborted` if the work must stop now (never, here)."""

    def wait(self, seconds: float) -> None:
        """Wait ``seconds``; a subclass may cut the wait short and raise :class:`PushAborted`."""
        time.sleep(seconds)


def retrying(
    call: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    redact: Callable[[str], str],
    stopper: Stopper | None = None,
    after_failure: Callable[[Failure], None] | None = None,
    log: logging.Logger | None = None,
    label: str = "",
    max_conflicts: int = 5,
) -> T:
    """Run ``call`` until it succeeds: transient errors are retried with backoff, conflicts at once.

    Every failed attempt is logged once (a warning with its cause and request id) before the retry. Raises
    :class:`PushFailed` on a permanent error or when the attempts run out, :class:`PushAborted` when stopped.
    ``after_failure`` runs after each failed attempt (e.g. to forget a branch head that may have moved).
    """
    stopper = stopper or Stopper()
    log = log or logging.getLogger("phi3_lora_hub.hub")
    prefix = f"{label}: " if label else ""
    delays = policy.delays()
    attempt = conflicts = 0
    while True:
        attempt += 1
        stopper.check()
        try:
            return call()
        except (PushAborted, Phi3LoraHubError):  # stopped on purpose, or a deliberate error (bad token...)
            raise
        except Exception as error:
            failure = failure_of(error, redact)
        if after_failure is not None:
            after_failure(failure)
        if failure.kind == "permanent":
            raise PushFailed(f"{what}: {failure.describe()}", failure)
        if failure.kind == "conflict":
            conflicts += 1
            if conflicts > max_conflicts:
                raise PushFailed(f"{what}: the branch kept moving ({failure.describe()})", failure)
            log.info("%s%s: %s; re-reading the branch and trying again", prefix, what, failure.describe())
            continue
        delay = next(delays, None)
        if delay is None:
            raise PushFailed(f"{what} failed {attempt} times, last: {failure.describe()}", failure)
        if failure.retry_after is not None:  # the server knows better than our backoff (a rate limit, say)
            delay = max(delay, failure.retry_after)
        log.warning(
            "%s%s failed (%s); retrying in %.1f s (attempt %d of %d)",
            prefix,
            what,
            failure.describe(),
            delay,
            attempt,
            policy.max_attempts,
        )
        stopper.wait(delay)
