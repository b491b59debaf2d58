"""Matching a method and a raw request path to an endpoint.

Patterns are matched against the path **before** percent-decoding: a revision such as ``refs%2Fpr%2F1`` stays
one segment. Endpoints decode the segments they receive (``segment()``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.messages import Request, Response
from phi3_lora_hub.local_hub.state import HubState

Params = dict[str, str]
Handler = Callable[[HubState, Request, Params], Response]

REPO = r"(?P<type>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
"""A repository in an ``/api/`` path: ``models|datasets|spaces/<namespace>/<name>``."""
GIT_REPO = r"(?:(?P<prefix>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)"
"""A repository in a file or git path: ``[datasets/|spaces/]<namespace>/<name>`` (no prefix for models)."""


def segment(params: Params, name: str, default: str = "") -> str:
    """A path parameter, percent-decoded."""
    value = params.get(name)
    return unquote(value) if value is not None else default


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler
    signed: bool = False
    """Authorised by a URL signature instead of a token (LFS transfer URLs, called without credentials)."""
    admin: bool = False
    """Authorised by the admin token (server control endpoints)."""
    body_limit: str | None = "max_json_bytes"
    """The ``HubSettings`` field capping the request body; ``None`` when the endpoint sets its own cap."""


class Router:
    """An ordered route table: the first route whose pattern matches the path decides."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(
        self,
        methods: str,
        pattern: str,
        handler: Handler,
        *,
        signed: bool = False,
        admin: bool = False,
        body_limit: str | None = "max_json_bytes",
    ) -> None:
        """Register ``handler`` for the space-separated ``methods`` on paths fully matching ``pattern``."""
        self._routes.append(Route(frozenset(methods.split()), re.compile(pattern), handler, signed, admin, body_limit))

    def resolve(self, method: str, raw_path: str) -> tuple[Route, Params]:
        """The route for this request and its path parameters; 404 for an unknown path, 405 for a wrong method."""
        allowed: set[str] = set()
        for route in self._routes:
            match = route.pattern.fullmatch(raw_path)
            if match is None:
                continue
            if method in route.methods:
                return route, {key: value for key, value in match.groupdict().items() if value is not None}
            allowed |= route.methods
        if allowed:
            raise errors.HubHttpError(
                405,
                "MethodNotAllowed",
                f"{method} is not supported on {raw_path}; use {', '.join(sorted(allowed))}.",
                {"Allow": ", ".join(sorted(allowed))},
            )
        raise errors.HubHttpError(
            404,
            "RouteNotFound",
            f"The local hub does not implement {method} {raw_path}. It serves the part of the Hub API that "
            "huggingface_hub, transformers and peft use for repos, commits, branches, uploads and downloads.",
        )
