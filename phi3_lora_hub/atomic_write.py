"""Crash-safe writes: a reader sees either the old content or the new one, never a torn file or half a folder.

A file is written to a temporary file in the same directory, flushed and fsynced, then renamed over the target with
``os.replace`` (atomic on POSIX and Windows), and the directory is fsynced so the rename itself survives a power
cut. A folder (a cache entry) is built under a temporary name and renamed into place once complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TMP_MARKER = ".tmp-"
"""Temporary files and folders contain this in their name, so leftovers of a crash can be found and deleted."""


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


def _temporary_sibling(target: Path) -> Path:
    return target.with_name(f".{target.name}{TMP_MARKER}{uuid.uuid4().hex}")


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``target``; on a clean exit it replaces ``target`` atomically.

    If the block raises, the temporary file is removed and ``target`` is untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(target)
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


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def build_directory_once(directory: Path, build: Callable[[Path], None]) -> bool:
    """Create ``directory`` by ``build(temporary_folder)`` then a rename: nobody ever sees it half built.

    Returns False, discarding ours, when the rename fails: another process (another node on a shared disk) renamed
    its own build into place first, and theirs is kept. If ``build`` raises, nothing is left behind.
    """
    staging = _temporary_sibling(directory)
    try:
        build(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(directory)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True
