"""Switches that change how the server answers; they can be flipped while it runs (from Python or over HTTP)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from phi3_lora_hub.local_hub.patterns import DEFAULT_LFS_THRESHOLD


@dataclass
class HubSettings:
    """Server behaviour switches. Defaults match what the unmodified client needs in the default (Xet) setup."""

    regular_only: bool = True
    """Answer ``uploadMode: "regular"`` for every file. A client with ``hf_xet`` installed then never tries
    Xet (which this server does not speak); turn it off, with ``HF_HUB_DISABLE_XET=1`` on the client side,
    to exercise the LFS upload path."""
    bare_404: bool = False
    """Send 404s without ``X-Error-Code``/``X-Error-Message``, like a naive server: for client-contract tests."""
    tree_page_size: int = 1000
    """Entries per page of a tree listing (the Hub uses 1000); the next page is linked with ``Link: rel="next"``."""
    tree_expand_page_size: int = 50
    """Entries per page of a tree listing with ``expand=true`` (the Hub uses 50)."""
    commits_page_size: int = 50
    """Commits per page of a commit listing."""
    lfs_threshold: int = DEFAULT_LFS_THRESHOLD
    """Files larger than this many bytes are LFS files (when not ``regular_only``)."""
    lfs_multipart_chunk_size: int | None = None
    """When set, LFS objects larger than this are uploaded in parts of this size (multipart transfer)."""
    lfs_verify: bool = True
    """Ask the client to call the LFS verify action after each upload."""
    max_json_bytes: int = 4 << 20
    """Largest request body of the JSON and form endpoints (all but commits and LFS transfers); 413 beyond."""
    connection_timeout_s: int = 120
    """A connection that sends or reads nothing for this many seconds is closed (applies to new connections)."""
    max_commit_bytes: int = 2 << 30
    """Largest NDJSON commit payload (it carries regular files inline); spooled to disk under the root, 413 beyond.
    An LFS transfer may carry exactly the size the LFS batch endpoint signed for it."""

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` (field name -> value), checking names and types; nothing changes if one is wrong."""
        known = {item.name: item for item in fields(self)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
            default = getattr(HubSettings(), name)
            if isinstance(default, bool):
                valid = isinstance(value, bool)
            elif name == "lfs_multipart_chunk_size":
                valid = value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
            else:
                valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
            if not valid:
                raise ValueError(f"invalid value for setting {name!r}: {value!r}")
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
