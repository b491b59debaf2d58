"""The hub root directory: what marks it as a hub's, and the secrets made for it.

A root holds ``local-hub.json`` (the marker) and ``credentials.json``: the write and read-only tokens of the
default user, the admin token of the control endpoints and the key that signs LFS transfer URLs. They are
random, made the first time the root is served (or asked for with ``root_credentials``), readable by the owner
only (mode 0600), and kept across restarts: clients keep working, an LFS upload in progress survives a restart,
and no two roots share a secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from phi3_lora_hub.errors import Phi3LoraHubError

ROOT_MARKER = "local-hub.json"
CREDENTIALS_FILE = "credentials.json"
DEFAULT_USER = "tester"
"""The user of a root's default tokens."""


class LocalHubError(Phi3LoraHubError):
    """The local hub cannot start or was used wrongly; the message says what to change."""


def random_token() -> str:
    """A fresh token in the Hub's style (``hf_`` prefix, 128 random bits)."""
    return f"hf_local_{secrets.token_hex(16)}"


@dataclass(frozen=True)
class RootCredentials:
    """The secrets of one hub root (see the module docstring)."""

    write_token: str
    """Token of user ``tester`` with the write role (what ``HF_TOKEN`` should be)."""
    read_token: str
    """Token of user ``tester`` with the read role."""
    admin_token: str
    """Token of the ``/_local_hub/`` control endpoints (faults, settings, request log)."""
    url_key: str
    """Hex key signing LFS transfer URLs."""

    def __repr__(self) -> str:
        return "RootCredentials(<secrets hidden>)"


def check_root(root: Path) -> None:
    """Raise ``LocalHubError`` unless ``root`` is a hub root, a new or empty directory, or only holds credentials."""
    if root.exists() and not root.is_dir():
        raise LocalHubError(f"{root} is a file; the hub root must be a directory.")
    ours = (CREDENTIALS_FILE, f".{CREDENTIALS_FILE}.")  # the file, and one being written by root_credentials
    foreign = root.is_dir() and any(not entry.name.startswith(ours) for entry in root.iterdir())
    if foreign and not (root / ROOT_MARKER).is_file():
        raise LocalHubError(
            f"{root} is not empty and is not a local hub root (no {ROOT_MARKER}): pass an empty or new "
            "directory, so that no unrelated files are mixed with the hub's storage."
        )


def root_credentials(root: str | os.PathLike[str]) -> RootCredentials:
    """The credentials of the hub root ``root``, made (at random, mode 0600) if it has none yet.

    This is how a program obtains the tokens of a hub served by another process, e.g.
    ``HF_TOKEN=root_credentials("hub-data").write_token``. Raises ``LocalHubError`` for a directory that is
    not a hub root.
    """
    directory = Path(root).expanduser().resolve()
    path = directory / CREDENTIALS_FILE
    if not path.is_file():
        check_root(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _publish(path, {key: random_token() for key in ("write_token", "read_token", "admin_token")})
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
        return RootCredentials(**{key: str(stored[key]) for key in RootCredentials.__dataclass_fields__})
    except (ValueError, KeyError, TypeError):
        raise LocalHubError(
            f"{path} is damaged: delete it to give the hub new random tokens (clients then need the new ones)."
        ) from None


def _publish(path: Path, tokens: dict[str, str]) -> None:
    """Write new credentials to ``path`` unless a concurrent caller already did (the first one wins)."""
    credentials = RootCredentials(**tokens, url_key=secrets.token_hex(32))
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"format": 1, "user": DEFAULT_USER, **asdict(credentials)}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)  # atomic, and never replaces credentials another process made
    finally:
        temporary.unlink(missing_ok=True)
