"""Pre-signed LFS transfer URLs and multipart upload sessions.

The LFS batch API hands out upload URLs that the client calls **without** its token (on the Hub they point
at S3). Here they point back at this server under ``/_lfs/``, and carry an HMAC signature over what they allow
(operation, repository, object, size) and an expiry, so only URLs this server issued are honoured.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from phi3_lora_hub.hub.server import errors

URL_LIFETIME_S = 3600


class UrlSigner:
    """Signs and checks the query string of ``/_lfs/`` URLs with a secret made when the server starts."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _signature(self, parts: tuple[str, ...], expires: int) -> str:
        message = "\0".join((*parts, str(expires))).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def query(self, *parts: str, extra: dict[str, str] | None = None) -> str:
        """A query string (without ``?``) that authorises ``parts`` for ``URL_LIFETIME_S`` seconds."""
        expires = int(time.time()) + URL_LIFETIME_S
        return urlencode({**(extra or {}), "expires": expires, "sig": self._signature(parts, expires)})

    def check(self, parts: tuple[str, ...], expires: str | None, signature: str | None) -> None:
        """Raise 403 unless ``signature`` was issued for ``parts`` and has not expired."""
        try:
            deadline = int(expires or "")
        except ValueError:
            deadline = 0
        expected = self._signature(parts, deadline)
        if not signature or not hmac.compare_digest(expected, signature) or deadline < time.time():
            raise errors.forbidden(
                "This LFS transfer URL is invalid or expired: ask the LFS batch endpoint for a new one"
            )


@dataclass(frozen=True)
class MultipartUpload:
    """An LFS object being uploaded in ``parts`` pieces of ``chunk_size`` bytes (the last may be shorter)."""

    upload_id: str
    repo_type: str
    repo_id: str
    oid: str
    size: int
    chunk_size: int

    @property
    def parts(self) -> int:
        return max(1, math.ceil(self.size / self.chunk_size))


class MultipartSessions:
    """Open multipart uploads (in memory) and their parts (staged on disk under ``<root>/tmp/multipart``)."""

    def __init__(self, staging: Path) -> None:
        self.directory = staging / "multipart"
        self._sessions: dict[str, MultipartUpload] = {}
        self._guard = threading.Lock()

    def start(self, repo_type: str, repo_id: str, oid: str, size: int, chunk_size: int) -> MultipartUpload:
        upload = MultipartUpload(uuid.uuid4().hex, repo_type, repo_id, oid, size, chunk_size)
        (self.directory / upload.upload_id).mkdir(parents=True, exist_ok=True)
        with self._guard:
            self._sessions[upload.upload_id] = upload
        return upload

    def get(self, upload_id: str) -> MultipartUpload:
        with self._guard:
            upload = self._sessions.get(upload_id)
        if upload is None:
            raise errors.HubError(
                404, "UploadNotFound", "Unknown or finished multipart upload: request new URLs from the LFS batch API."
            )
        return upload

    def part_path(self, upload: MultipartUpload, number: int) -> Path:
        if not 1 <= number <= upload.parts:
            raise errors.bad_request(f"Part number {number} is out of range 1..{upload.parts}.")
        return self.directory / upload.upload_id / f"{number:05d}"

    def finish(self, upload: MultipartUpload) -> None:
        """Forget the session and delete its staged parts."""
        with self._guard:
            self._sessions.pop(upload.upload_id, None)
        shutil.rmtree(self.directory / upload.upload_id, ignore_errors=True)


def part_etag(data: bytes) -> str:
    """The ETag returned for an uploaded part (the client echoes it back at completion)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
