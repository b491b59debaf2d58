"""Fault injection: make chosen requests fail, stall or lose their connection, a given number of times.

A rule matches requests by method and by a regular expression searched in the raw request path (query string
excluded), or by a named endpoint such as ``"commit"``. The first active matching rule applies and uses up
one of its ``count`` (``None`` = forever). What it does:

- ``status``: answer with this status (JSON error body, ``X-Error-Code: InjectedFault`` unless ``headers``
  override it) instead of handling the request;
- ``delay``: wait this many seconds, then go on (and apply ``status`` or ``drop`` if set);
- ``drop``: close the connection without an answer.

``stage`` says when: ``"before"`` the request is handled (nothing happens on the server), ``"after"`` it was
handled (the commit landed but the client never hears so, or hears an error), or, for drops only,
``"mid_body"``: the status line and headers are sent, then the connection closes halfway through the body.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Stage = Literal["before", "after", "mid_body"]
STAGES: tuple[Stage, ...] = ("before", "after", "mid_body")

_REPO = r"/api/(?:models|datasets|spaces)/[^/]+/[^/]+"
ENDPOINTS: dict[str, tuple[str | None, str]] = {
    "whoami": ("GET", r"^/api/whoami-v2$"),
    "create_repo": ("POST", r"^/api/repos/create$"),
    "delete_repo": ("DELETE", r"^/api/repos/delete$"),
    "repo_info": ("GET", rf"^{_REPO}(?:/revision/[^/]+)?$"),
    "preupload": ("POST", rf"^{_REPO}/preupload/"),
    "commit": ("POST", rf"^{_REPO}/commit/"),
    "lfs_batch": ("POST", r"\.git/info/lfs/objects/batch$"),
    "lfs_upload": ("PUT", r"^/_lfs/"),
    "lfs_verify": ("POST", r"^/_lfs/.*/verify$"),
    "resolve": (None, r"^/(?:(?:datasets|spaces)/)?[^/]+/[^/]+/resolve/"),
    "tree": ("GET", rf"^{_REPO}/tree/"),
    "paths_info": ("POST", rf"^{_REPO}/paths-info/"),
    "refs": ("GET", rf"^{_REPO}/refs$"),
    "commits": ("GET", rf"^{_REPO}/commits/"),
    "branch": (None, rf"^{_REPO}/branch/"),
    "tag": (None, rf"^{_REPO}/tag/"),
    "validate_yaml": ("POST", r"^/api/validate-yaml$"),
}
"""Named request kinds for ``endpoint=``: method (``None`` = any) and path regex."""


@dataclass
class FaultRule:
    """One fault. ``hits`` counts how often it applied; ``count`` is what is left (``None`` = unlimited)."""

    path: str
    method: str | None = None
    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    stage: Stage = "before"
    count: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    id: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        re.compile(self.path)  # fail at creation, not at the first request
        if self.method is not None:
            self.method = self.method.upper()
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "mid_body" and not self.drop:
            raise ValueError('stage="mid_body" only makes sense for a dropped connection (drop=True)')
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {self.status}")
        if self.status is not None and self.drop:
            raise ValueError("a rule either answers with a status or drops the connection, not both")
        if self.status is None and not self.drop and self.delay <= 0:
            raise ValueError("a rule needs a status, a drop or a positive delay")
        if self.delay < 0 or (self.count is not None and self.count < 0):
            raise ValueError("delay and count cannot be negative")

    @property
    def active(self) -> bool:
        return self.count is None or self.count > 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method.upper()) and re.search(self.path, path) is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rule_from_spec(endpoint: str | None, method: str | None, path: str | None, **options: Any) -> FaultRule:
    """Build a rule from a named ``endpoint`` or an explicit ``method``/``path`` (an explicit method wins)."""
    if endpoint is not None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(sorted(ENDPOINTS))}")
        if path is not None:
            raise ValueError("give either endpoint= or path=, not both")
        default_method, path = ENDPOINTS[endpoint]
        method = method or default_method
    if path is None:
        raise ValueError("give endpoint= (e.g. 'commit') or path= (a regex searched in the request path)")
    return FaultRule(path=path, method=method, **options)


class FaultInjector:
    """The fault rules of one server. Thread-safe; every method returns at once."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._guard = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, rule: FaultRule) -> FaultRule:
        """Register ``rule`` (after the existing ones) and return it with its id set."""
        with self._guard:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def fail(
        self,
        endpoint: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int = 500,
        count: int | None = 1,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
        delay: float = 0.0,
        stage: Stage = "before",
    ) -> FaultRule:
        """Answer the next ``count`` matching requests with ``status`` (e.g. 429 with ``{"Retry-After": "1"}``).

        ``stage="after"`` handles the request first, then answers with the error anyway.
        """
        return self.add(
            rule_from_spec(
                endpoint,
                method,
                path,
                status=status,
                count=count,
                headers=dict(headers or {}),
                message=message,
                delay=delay,
                stage=stage,
            )
        )

    def delay(
        self,
        endpoint: str | None = None,
        *,
        seconds: float,
        method: str | None = None,
        path: str | None = None,
        count: int | None = 1,
        stage: Stage = "before",
    ) -> FaultRule:
        """Stall the next ``count`` matching requests for ``seconds``, before or after handling them."""
        return self.add(rule_from_spec(endpoint, method, path, delay=seconds, count=count, stage=stage))

    def drop(
        self,
        endpoint: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        count: int | None = 1,
        stage: Stage = "before",
        delay: float = 0.0,
    ) -> FaultRule:
        """Close the connection of the next ``count`` matching requests without a (complete) answer."""
        return self.add(rule_from_spec(endpoint, method, path, drop=True, count=count, stage=stage, delay=delay))

    def remove(self, rule: FaultRule | int) -> None:
        rule_id = rule if isinstance(rule, int) else rule.id
        with self._guard:
            self._rules = [existing for existing in self._rules if existing.id != rule_id]

    def clear(self) -> None:
        """Remove every rule."""
        with self._guard:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        """The registered rules, exhausted ones included (so a test can read their ``hits``)."""
        with self._guard:
            return list(self._rules)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule that applies to this request, with one use consumed; ``None`` when no rule matches."""
        with self._guard:
            for rule in self._rules:
                if rule.active and rule.matches(method, path):
                    if rule.count is not None:
                        rule.count -= 1
                    rule.hits += 1
                    return rule
        return None
