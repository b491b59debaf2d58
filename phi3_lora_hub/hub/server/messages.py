"""HTTP requests and responses as the endpoints see them, independent of the socket server.

The request keeps its **raw** path: revisions arrive percent-encoded (``refs%2Fpr%2F1``, ``ckpt%2Fstep-10``)
and must be split into segments before decoding, or a ``/`` inside a revision would be taken for a separator.
The body is read lazily, so an upload can be streamed to disk instead of being held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from phi3_lora_hub.hub.server import errors
from phi3_lora_hub.hub.server.auth import User

_CHUNK = 1 << 16


class BodyReader:
    """Reads a request body framed by ``Content-Length`` or ``Transfer-Encoding: chunked``."""

    def __init__(self, stream: Any, headers: Message) -> None:
        self._stream = stream
        self._chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        length = headers.get("Content-Length")
        self._remaining = int(length) if length and not self._chunked else 0
        self._done = not self._chunked and self._remaining == 0

    @property
    def consumed(self) -> bool:
        return self._done

    def chunks(self) -> Iterator[bytes]:
        """Yield the body in pieces; each byte is yielded once over all calls."""
        if self._chunked:
            yield from self._chunked_pieces()
        else:
            while self._remaining > 0:
                piece = self._stream.read(min(_CHUNK, self._remaining))
                if not piece:
                    raise ConnectionError("client closed the connection in the middle of the request body")
                self._remaining -= len(piece)
                yield piece
        self._done = True

    def _chunked_pieces(self) -> Iterator[bytes]:
        while not self._done:
            size_line = self._stream.readline(1024)
            if not size_line:
                raise ConnectionError("client closed the connection in the middle of a chunked body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._stream.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return
            remaining = size
            while remaining > 0:
                piece = self._stream.read(min(_CHUNK, remaining))
                if not piece:
                    raise ConnectionError("client closed the connection in the middle of a chunked body")
                remaining -= len(piece)
                yield piece
            self._stream.readline(1024)  # CRLF after each chunk

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def discard(self) -> None:
        for _ in self.chunks():
            pass


@dataclass
class Request:
    """One HTTP request: method, raw path and query, headers, a lazily read body, and the caller's identity."""

    method: str
    raw_path: str
    """The path as sent, percent-encoding kept (routes match on it)."""
    raw_query: str
    headers: Message
    body_reader: BodyReader
    base_url: str
    """``http://host:port`` as the client addressed the server; URLs in answers are built on it."""
    user: User | None = None
    _body: bytes | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        """Path and query as sent."""
        return f"{self.raw_path}?{self.raw_query}" if self.raw_query else self.raw_path

    @property
    def query(self) -> dict[str, list[str]]:
        """Decoded query parameters."""
        return parse_qs(self.raw_query, keep_blank_values=True)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        """A boolean query parameter: ``1``/``true``/``yes`` (any case) are true."""
        return (self.param(name) or "").lower() in ("1", "true", "yes")

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self.body_reader.read_all()
        return self._body

    def json(self) -> Any:
        """The body parsed as JSON; 400 when it is not."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as error:
            raise errors.bad_request(f"The request body is not valid JSON: {error}") from None

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object (an empty body counts as ``{}``); 400 otherwise."""
        value = self.json()
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise errors.bad_request("The request body must be a JSON object.")
        return value

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass
class Response:
    """What to send back. The body is either ``body`` or a byte range of ``file`` (streamed)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: Path | None = None
    offset: int = 0
    length: int = 0
    drop: str | None = None
    """Set by a fault: close the connection instead of answering ("before"/"after") or halfway ("mid_body")."""

    @property
    def content_length(self) -> int:
        return self.length if self.file is not None else len(self.body)


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(value).encode()
    return Response(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)


def header_safe(text: str) -> str:
    """``text`` as a single Latin-1 header value (header values cannot carry newlines or arbitrary Unicode)."""
    flat = " ".join(text.split())
    return flat.encode("latin-1", "replace").decode("latin-1")[:1000]


def error_response(error: errors.HubError, *, plain_text: bool = False) -> Response:
    """The response for ``error``: JSON ``{"error": message, ...}`` plus ``X-Error-Code``/``X-Error-Message``."""
    headers = {"X-Error-Code": error.code, "X-Error-Message": header_safe(error.message), **error.headers}
    if plain_text:
        return Response(error.status, {"Content-Type": "text/plain; charset=utf-8", **headers}, error.message.encode())
    return json_response({"error": error.message, **error.body}, error.status, headers)
