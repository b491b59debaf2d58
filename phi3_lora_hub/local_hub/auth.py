"""Tokens, users and who may do what.

A token maps to a user with a role: ``read`` tokens can read what their user can see, ``write`` tokens can also
create repositories and commit in their user's namespace and in the organisations listed for them. Without a
token you can read public repositories; an unknown token is always refused with 401 (as on the Hub), so a typo
in ``HF_TOKEN`` never silently degrades to anonymous access. Private repositories are invisible (404) to
everyone outside their namespace.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.repos import RepoMeta
from phi3_lora_hub.local_hub.rootdir import random_token

Role = Literal["read", "write"]
ROLES: tuple[Role, ...] = ("read", "write")


@dataclass(frozen=True)
class User:
    """Who a token authenticates: a user name, the token's role and the organisations the user belongs to."""

    name: str
    role: Role = "write"
    orgs: tuple[str, ...] = field(default=())

    def namespaces(self) -> tuple[str, ...]:
        """The namespaces this user owns: their name and their organisations."""
        return (self.name, *self.orgs)

    def can_read(self, meta: RepoMeta) -> bool:
        return not meta.private or meta.namespace in self.namespaces()

    def can_write_namespace(self, namespace: str) -> bool:
        return self.role == "write" and namespace in self.namespaces()


def can_read(user: User | None, meta: RepoMeta) -> bool:
    """Whether ``user`` (``None`` = anonymous) may read the repository."""
    return not meta.private if user is None else user.can_read(meta)


def require_read(user: User | None, meta: RepoMeta) -> None:
    """Raise 404 RepoNotFound unless ``user`` may read the repository (private repos are not revealed)."""
    if not can_read(user, meta):
        raise errors.repo_not_found(meta.repo_type, meta.repo_id)


def require_write(user: User | None, namespace: str) -> User:
    """Return ``user`` if it may write in ``namespace``; otherwise raise 401 (anonymous) or 403 (no right)."""
    if user is None:
        raise errors.unauthorized("Authentication required: pass a token with the write role (HF_TOKEN or token=...).")
    if user.role != "write":
        raise errors.forbidden(
            f"The token of user '{user.name}' is read-only: use a token with the write role for this operation"
        )
    if namespace not in user.namespaces():
        raise errors.forbidden(
            f"User '{user.name}' cannot write in namespace '{namespace}' (it can write in: "
            f"{', '.join(user.namespaces())})"
        )
    return user


def parse_authorization(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` when there is no header.

    Raises 401 for any other form, so a malformed header is not mistaken for anonymous access.
    """
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.unauthorized("Invalid credentials in Authorization header")
    return token.strip()


class TokenRegistry:
    """The token -> user table (in memory: tokens are never written to the hub root)."""

    def __init__(self, tokens: Mapping[str, User] | None = None) -> None:
        self._tokens: dict[str, User] = {}
        self._guard = threading.Lock()
        for token, user in (tokens or {}).items():
            self.add(token, user)

    def add(self, token: str, user: User) -> None:
        """Map ``token`` to ``user`` (replacing any previous mapping of that token)."""
        if not token or any(char.isspace() for char in token):
            raise ValueError("a token must be a non-empty string without whitespace")
        if user.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {user.role!r}")
        with self._guard:
            self._tokens[token] = user

    def new_token(self, user: User) -> str:
        """Create, register and return a fresh random token for ``user``."""
        token = random_token()
        self.add(token, user)
        return token

    def revoke(self, token: str) -> None:
        with self._guard:
            self._tokens.pop(token, None)

    def lookup(self, token: str | None) -> User | None:
        """The user of ``token``: ``None`` for no token; 401 for a token nobody issued."""
        if token is None:
            return None
        with self._guard:
            user = self._tokens.get(token)
        if user is None:
            raise errors.unauthorized()
        return user

    def users(self) -> Iterable[User]:
        with self._guard:
            return list(self._tokens.values())
