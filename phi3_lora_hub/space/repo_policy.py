"""Which adapter repos and revisions a visitor may ask for: ``namespace/name`` ids on the allowlist, plain refs.

A repo id is only ever handed to ``huggingface_hub`` download functions, which never read a local directory, so a
folder named like a repo (``adapters``, ``me/lora``) cannot shadow it. The rules here add what the Hub client's
own ``validate_repo_id`` lets through: a bare name (``adapters``) is refused, as are paths (``../x``, ``/etc``,
``~/x``, ``C:\\x``) and anything off the allowlist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.space.refusal import Refusal, quote

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
DEFAULT_REVISION = "main"


def is_commit(revision: str | None) -> bool:
    """True for a full 40-hex commit id (which pins content and needs no lookup)."""
    return revision is not None and _COMMIT.fullmatch(revision) is not None


def repo_id_problem(text: str) -> str | None:
    """Why ``text`` is not a ``namespace/name`` repo id, or ``None`` when it is one."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if "\\" in text or text.startswith(("/", "~", ".")) or ":" in text:
        return "it looks like a file path"
    parts = text.split("/")
    if len(parts) != 2:
        return "it must be exactly namespace/name"
    if not all(_PART.fullmatch(part) for part in parts):
        return "each part must start with a letter or digit and use only letters, digits, '.', '_' and '-'"
    try:
        validate_repo_id(text)
    except HFValidationError:
        return "the Hub does not accept it as a repo id ('--', '..', a trailing '.git', ...)"
    return None


@dataclass(frozen=True)
class AllowList:
    """Repos the Space may load: exact ids (``me/lora``) and whole namespaces (``me/*``), compared ignoring case."""

    repos: frozenset[str]
    namespaces: frozenset[str]

    @classmethod
    def of(cls, entries: Iterable[str]) -> AllowList:
        """Build from ``namespace/name`` and ``namespace/*`` entries; ``ConfigError`` for anything else."""
        repos, namespaces = set(), set()
        for entry in entries:
            entry = entry.strip()
            namespace, _, name = entry.partition("/")
            if name == "*" and _PART.fullmatch(namespace):
                namespaces.add(namespace.lower())
                continue
            problem = repo_id_problem(entry)
            if problem:
                raise ConfigError(
                    f"Allowlist entry {entry!r} is not usable ({problem}): write namespace/name or namespace/*."
                )
            repos.add(entry.lower())
        return cls(frozenset(repos), frozenset(namespaces))

    def allows(self, repo_id: str) -> bool:
        namespace = repo_id.split("/", 1)[0].lower()
        return repo_id.lower() in self.repos or namespace in self.namespaces

    def __bool__(self) -> bool:
        return bool(self.repos or self.namespaces)


def check_repo_id(text: str | None, allowlist: AllowList) -> str:
    """``text`` stripped, when it is a ``namespace/name`` repo id on ``allowlist``; else a :class:`Refusal`."""
    repo_id = (text or "").strip()
    if not repo_id:
        raise Refusal("Pick an adapter repository (namespace/name), or the base model.")
    problem = repo_id_problem(repo_id)
    if problem:
        raise Refusal(
            f"{quote(repo_id)} is not a Hub repository id ({problem}). Adapters are loaded from the Hub only: "
            "write namespace/name, e.g. `my-name/phi3-compass-lora`."
        )
    if not allowlist.allows(repo_id):
        raise Refusal(
            f"{quote(repo_id)} is not on this Space's allowlist. Pick one of the adapters offered, or ask the "
            "Space owner to add it (PHI3_SPACE_ALLOWLIST)."
        )
    return repo_id


def check_revision(text: str | None) -> str:
    """A branch or tag name, or a 40-hex commit; empty means ``main``. Anything else is a :class:`Refusal`.

    ``/`` is refused: clients send it percent-encoded and servers disagree on routing it (checkpoint branches
    are named ``step-N``).
    """
    revision = (text or "").strip() or DEFAULT_REVISION
    if is_commit(revision) or (_REF.fullmatch(revision) and ".." not in revision):
        return revision
    raise Refusal(
        f"{quote(revision)} is not a revision this Space accepts: use a branch or tag name (letters, digits, "
        "'.', '_', '-') or a full 40-character commit id."
    )
