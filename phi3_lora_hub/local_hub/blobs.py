"""Content-addressed storage of file contents, shared by every repository under one root.

A blob is stored once, under its sha256, whether it arrived inline in a commit ("regular" file) or through the
LFS upload API. Writes are verified against the expected hash and size before the blob becomes visible, so a
truncated or corrupted upload can never be referenced by a commit.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from phi3_lora_hub.atomic_write import fsync_directory

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class BlobMismatchError(ValueError):
    """Uploaded content does not match the sha256 or size announced for it."""


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file with this content (what the Hub calls a regular file's ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class BlobStore:
    """Blobs under ``<root>/blobs/ab/cd/<sha256>``; uploads are staged under ``<root>/tmp`` first."""

    def __init__(self, root: Path) -> None:
        self.directory = root / "blobs"
        self.staging = root / "tmp"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self._git_oids: dict[str, str] = {}

    def path(self, sha256: str) -> Path:
        """Where the blob with this sha256 lives (whether or not it exists)."""
        if not SHA256_RE.fullmatch(sha256):
            raise ValueError(f"not a lowercase sha256 hex digest: {sha256!r}")
        return self.directory / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (a no-op when already stored) and return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            self.put_stream([data], expected_sha256=digest, expected_size=len(data))
        return digest

    def put_stream(self, chunks: Iterable[bytes], *, expected_sha256: str, expected_size: int | None) -> str:
        """Store the concatenated ``chunks`` if their sha256 (and size, when given) match; return the sha256.

        Raises ``BlobMismatchError`` and stores nothing when the content is not what was announced.
        """
        target = self.path(expected_sha256)
        staged = self.staging / f"blob-{uuid.uuid4().hex}"
        hasher = hashlib.sha256()
        size = 0
        self.staging.mkdir(parents=True, exist_ok=True)
        try:
            with open(staged, "wb") as handle:
                for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if hasher.hexdigest() != expected_sha256 or (expected_size is not None and size != expected_size):
                raise BlobMismatchError(
                    f"uploaded content has sha256 {hasher.hexdigest()} and size {size}, but "
                    f"sha256 {expected_sha256} and size {expected_size} were announced"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)  # identical content may already be there: replacing it is harmless
            fsync_directory(target.parent)
        finally:
            staged.unlink(missing_ok=True)
        return expected_sha256

    def git_oid(self, sha256: str) -> str:
        """The git blob sha1 of a stored blob (computed once, then cached in memory)."""
        cached = self._git_oids.get(sha256)
        if cached is None:
            path = self.path(sha256)
            hasher = hashlib.sha1(b"blob %d\0" % path.stat().st_size, usedforsecurity=False)
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    hasher.update(chunk)
            cached = self._git_oids[sha256] = hasher.hexdigest()
        return cached
