"""File downloads: ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with the headers the client relies on.

The client needs ``X-Repo-Commit`` (to cache by commit) and an ``ETag`` (the cache's blob name) on every
answer, the size (``Content-Length``/``X-Linked-Size``), and ``EntryNotFound`` + ``X-Repo-Commit`` on a missing
file so it can remember the absence. Files are served directly (no CDN redirect) and never with Xet headers.
``Range: bytes=N-`` resumes are answered with 206.
"""

from __future__ import annotations

import mimetypes
import re

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.api_repos import open_repo
from phi3_lora_hub.local_hub.messages import Request, Response, header_safe
from phi3_lora_hub.local_hub.router import Params, segment
from phi3_lora_hub.local_hub.state import HubState

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` for a single-range ``Range`` header, ``None`` for the whole file; 416 if invalid."""
    if not header:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        return None  # not a form we serve partially: send the whole file (clients accept a 200)
    first, last = match.groups()
    if first:
        start, end = int(first), (int(last) + 1 if last else size)
    else:
        start, end = max(0, size - int(last)), size
    end = min(end, size)
    if start >= size or start >= end:
        raise errors.HubHttpError(
            416,
            "RangeNotSatisfiable",
            f"Range {header!r} is outside the file ({size} bytes).",
            {"Content-Range": f"bytes */{size}"},
        )
    return start, end


def resolve(app: HubState, request: Request, params: Params) -> Response:
    """``HEAD``/``GET /[datasets/|spaces/]{repo}/resolve/{rev}/{path}``: the file, with Hub download headers."""
    repo = open_repo(app, request, params)
    commit = repo.resolve(segment(params, "rev"))
    path = segment(params, "path")
    entry = commit.tree.get(path)
    if entry is None:
        raise errors.entry_not_found(path, commit.oid)
    headers = {
        "X-Repo-Commit": commit.oid,
        "ETag": f'"{entry.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
        "Content-Disposition": f'inline; filename="{header_safe(path.rsplit("/", 1)[-1]).replace(chr(34), "")}"',
    }
    if entry.lfs:
        headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
    blob = app.blobs.path(entry.sha256)
    span = _byte_range(request.headers.get("Range"), entry.size)
    if span is None:
        return Response(200, headers, file=blob, offset=0, length=entry.size)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    return Response(206, headers, file=blob, offset=start, length=end - start)
