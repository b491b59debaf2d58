"""Crash-safe file writes: a reader sees either the old content or the new one, never a torn file.

Every write goes to a temporary file in the same directory, is flushed and fsynced, then renamed over the
target with ``os.replace`` (atomic on POSIX and Windows), and the directory is fsynced so the rename itself
survives a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

TMP_MARKER = ".tmp-"
"""Temporary files contain this in their name; ``remove_stale_temporaries`` deletes leftovers after a crash."""


def fsync_directory(directory: Path) -> None:
    """Persist the directory entry of a rename (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``target``; on a clean exit it replaces ``target`` atomically.

    If the block raises, the temporary file is removed and ``target`` is untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}{TMP_MARKER}{uuid.uuid4().hex}")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_writer(target) as handle:
        handle.write(data)


def atomic_write_json(target: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``target`` atomically (sorted keys, so equal values give equal bytes)."""
    atomic_write_bytes(target, json.dumps(value, sort_keys=True, indent=1).encode("utf-8"))


def read_json(path: Path) -> Any:
    """Parse the JSON file at ``path`` (raises ``FileNotFoundError`` when it does not exist)."""
    with open(path, "rb") as handle:
        return json.load(handle)


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporary files left under ``root`` by an interrupted write; return how many were removed."""
    removed = 0
    for path in root.rglob(f"*{TMP_MARKER}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
