"""Raw HTTP/1.1 exchanges with the local hub, for requests no well-behaved client would send."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    """One parsed HTTP answer (``status`` 0 when the server sent nothing parsable)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    raw_head: str = ""

    def json(self) -> object:
        return json.loads(self.body)


def parse_answer(data: bytes, seconds: float = 0.0) -> Answer:
    """Parse ``data`` as one HTTP/1.x response; ``status`` 0 when it is not one."""
    head, separator, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not separator or len(parts) < 2 or parts[0] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1].isdigit():
        return Answer(0, seconds=seconds, raw_head=lines[0][:200])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]  # what follows belongs to the next (pipelined) answer
    return Answer(int(parts[1]), headers, body, seconds, lines[0])


def exchange(port: int, data: bytes, *, timeout: float = 10.0, half_close: bool = False) -> Answer:
    """Send ``data`` on a fresh connection and read the first answer (until its body is complete or EOF)."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(data)
            if half_close:
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading everything: read what it said
        try:
            while True:
                piece = connection.recv(65536)
                if not piece:
                    break
                received += piece
                answer = parse_answer(received)
                length = answer.headers.get("content-length")
                if answer.status and length is not None and len(answer.body) >= int(length):
                    break
        except OSError:
            pass
    return parse_answer(received, time.monotonic() - started)


def request_bytes(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A well-formed request (``Host`` and ``Content-Length`` set unless ``headers`` override them)."""
    fields = {"Host": f"127.0.0.1:{port}", "Content-Length": str(len(body)), "Connection": "close"}
    fields.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return head.encode("latin-1") + b"\r\n" + body
