"""Pre-signed LFS transfer URLs and multipart upload sessions.

The LFS batch API hands out upload URLs that the client calls **without** its token (on the Hub they point
at S3). Here they point back at this server under ``/_lfs/``, and carry an HMAC signature over what they allow
(operation, repository, object, size) and an expiry, so only URLs this server issued are honoured. The key
is the root's (``credentials.json``) and multipart sessions are kept under the root, so an upload in progress
continues after a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.fsutil import atomic_write_json, read_json

URL_LIFETIME_S = 3600


class UrlSigner:
    """Signs and checks the query string of ``/_lfs/`` URLs with the root's key (so they outlive a restart)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

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
    """Open multipart uploads and their parts, on disk under ``<root>/uploads/<id>/`` so they survive a restart.

    Sessions older than the URLs they were given (``URL_LIFETIME_S``) are removed when the hub starts.
    """

    def __init__(self, root: Path) -> None:
        self.directory = root / "uploads"
        if self.directory.is_dir():
            for session in self.directory.iterdir():
                if session.stat().st_mtime < time.time() - URL_LIFETIME_S:
                    shutil.rmtree(session, ignore_errors=True)

    def start(self, repo_type: str, repo_id: str, oid: str, size: int, chunk_size: int) -> MultipartUpload:
        upload = MultipartUpload(uuid.uuid4().hex, repo_type, repo_id, oid, size, chunk_size)
        atomic_write_json(self.directory / upload.upload_id / "session.json", asdict(upload))
        return upload

    def get(self, upload_id: str) -> MultipartUpload:
        try:
            return MultipartUpload(**read_json(self.directory / upload_id / "session.json"))
        except FileNotFoundError:
            raise errors.HubHttpError(
                404, "UploadNotFound", "Unknown or finished multipart upload: request new URLs from the LFS batch API."
            ) from None

    def part_path(self, upload: MultipartUpload, number: int) -> Path:
        if not 1 <= number <= upload.parts:
            raise errors.bad_request(f"Part number {number} is out of range 1..{upload.parts}.")
        return self.directory / upload.upload_id / f"{number:05d}"

    def finish(self, upload: MultipartUpload) -> None:
        """Forget the session and delete its staged parts."""
        shutil.rmtree(self.directory / upload.upload_id, ignore_errors=True)


def part_etag(path: Path) -> str:
    """The ETag of the uploaded part stored at ``path`` (the client echoes it back at completion)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()
