"""HTTP requests and responses as the endpoints see them, independent of the socket server.

The request keeps its **raw** path: revisions arrive percent-encoded (``refs%2Fpr%2F1``, ``ckpt%2Fstep-10``)
and must be split into segments before decoding, or a ``/`` inside a revision would be taken for a separator.
The body is read lazily, so an upload can be streamed to disk instead of being held in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.auth import User

_CHUNK = 1 << 16
_DISCARD_LIMIT = 1 << 16
"""An unread body up to this size is read and dropped to keep a keep-alive connection; beyond, it is closed."""
_LENGTH_RE = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]{1,15}")


def payload_too_large(size: int, limit: int) -> errors.HubHttpError:
    return errors.HubHttpError(
        413,
        "PayloadTooLarge",
        f"The request body has {size} bytes or more; this endpoint accepts at most {limit} bytes. File content "
        "goes through the commit and LFS upload endpoints (create_commit, upload_file and upload_folder do it).",
        {"Connection": "close"},
    )


class BodyReader:
    """Reads a request body framed by ``Content-Length`` or ``Transfer-Encoding: chunked`` (RFC 9112 §6).

    The framing is checked when the reader is made: a malformed ``Content-Length``, two different ones, both
    headers at once, or a transfer coding other than ``chunked`` raise a 400 ``HubHttpError`` (the body length
    cannot be known, so the connection must be closed). ``limit`` caps the body: a declared length above it is
    refused with 413 before any byte is read, a chunked body as soon as it goes past it.
    """

    def __init__(self, stream: Any, headers: Message) -> None:
        self._stream = stream
        self._limit: int | None = None
        self._received = 0
        self._broken = False
        encodings = ",".join(headers.get_all("Transfer-Encoding") or [])
        lengths = {value.strip() for value in headers.get_all("Content-Length") or []}
        if encodings.strip():
            if [coding.strip().lower() for coding in encodings.split(",")] != ["chunked"]:
                raise _framing_error(f"unsupported Transfer-Encoding {encodings!r} (only 'chunked' is accepted)")
            if lengths:
                raise _framing_error("both Transfer-Encoding and Content-Length are set; send only one")
        if len(lengths) > 1 or not all(_LENGTH_RE.fullmatch(value) for value in lengths):
            raise _framing_error(f"invalid Content-Length {', '.join(sorted(lengths))!r}: send one decimal byte count")
        self._chunked = bool(encodings.strip())
        self._remaining = int(lengths.pop()) if lengths else 0
        self.declared_length: int | None = None if self._chunked else self._remaining
        """The ``Content-Length`` (``None`` for a chunked body)."""
        self._done = not self._chunked and self._remaining == 0

    @property
    def consumed(self) -> bool:
        return self._done

    @property
    def limit(self) -> int | None:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        """Accept at most ``value`` body bytes; 413 at once when the declared length is larger."""
        self._limit = value
        if self.declared_length is not None and self.declared_length > value:
            raise payload_too_large(self.declared_length, value)

    def chunks(self) -> Iterator[bytes]:
        """Yield the body in pieces; each byte is yielded once over all calls."""
        try:
            if self._chunked:
                yield from self._chunked_pieces()
            else:
                while self._remaining > 0:
                    piece = self._stream.read(min(_CHUNK, self._remaining))
                    if not piece:
                        raise _framing_error("the body ended before its Content-Length")
                    self._remaining -= len(piece)
                    yield piece
        except BaseException:
            self._broken = True
            raise
        self._done = True

    def _count(self, size: int) -> None:
        self._received += size
        if self._limit is not None and self._received > self._limit:
            raise payload_too_large(self._received, self._limit)

    def _line(self) -> bytes:
        line = self._stream.readline(1024)
        if not line:
            raise _framing_error("the chunked body ended before its last chunk")
        return line

    def _chunked_pieces(self) -> Iterator[bytes]:
        while not self._done:
            size_text = self._line().split(b";")[0].strip()
            if not _CHUNK_SIZE_RE.fullmatch(size_text):
                raise _framing_error(f"invalid chunk size {size_text[:40]!r}: chunks start with a hex length")
            size = int(size_text, 16)
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):
                    pass  # trailers
                self._done = True
                return
            self._count(size)
            remaining = size
            while remaining > 0:
                piece = self._stream.read(min(_CHUNK, remaining))
                if not piece:
                    raise _framing_error("the chunked body ended before its last chunk")
                remaining -= len(piece)
                yield piece
            if self._line() not in (b"\r\n", b"\n"):
                raise _framing_error("a chunk is longer than its declared size")

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def finish(self) -> bool:
        """Make the connection ready for the next request: ``False`` when it must be closed instead.

        A small unread body is read and dropped; a large or broken one is left, and the connection closed.
        """
        if self._done:
            return True
        if self._broken or self._chunked or self._remaining > _DISCARD_LIMIT:
            return False
        try:
            for _ in self.chunks():
                pass
        except (errors.HubHttpError, OSError):
            return False
        return True


def parse_json(data: bytes, what: str) -> Any:
    """``data`` parsed as JSON; a 400 naming ``what`` when it is not JSON or is nested too deeply to parse."""
    try:
        return json.loads(data)
    except RecursionError:
        raise errors.bad_request(f"{what} is JSON nested too deeply; send at most a few hundred levels.") from None
    except ValueError as error:
        raise errors.bad_request(f"{what} is not valid JSON: {error}") from None


def _framing_error(problem: str) -> errors.HubHttpError:
    return errors.HubHttpError(
        400, "ProtocolError", f"Malformed HTTP request: {problem} (RFC 9112 §6).", {"Connection": "close"}
    )


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
        return parse_json(self.body or b"null", "The request body")

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


def error_response(error: errors.HubHttpError, *, plain_text: bool = False) -> Response:
    """The response for ``error``: JSON ``{"error": message, ...}`` plus ``X-Error-Code``/``X-Error-Message``."""
    headers = {"X-Error-Code": error.code, "X-Error-Message": header_safe(error.message), **error.headers}
    if plain_text:
        return Response(error.status, {"Content-Type": "text/plain; charset=utf-8", **headers}, error.message.encode())
    return json_response({"error": error.message, **error.body}, error.status, headers)
