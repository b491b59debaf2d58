"""``LocalHub``: the local Hub server's lifecycle (start, stop, restart on the same port and root) and sockets.

Built on ``http.server.ThreadingHTTPServer`` (one thread per connection, HTTP/1.1 keep-alive), bound to
127.0.0.1 only. Stopping really stops: the listening socket and every open keep-alive connection are closed,
injected delays are cut short, and ``stop()`` waits for requests in progress, so nothing touches the root
after it returns.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from phi3_lora_hub.local_hub.app import HubApp
from phi3_lora_hub.local_hub.auth import Role, TokenRegistry, User
from phi3_lora_hub.local_hub.errors import HubHttpError
from phi3_lora_hub.local_hub.faults import FaultInjector
from phi3_lora_hub.local_hub.fsutil import remove_stale_temporaries
from phi3_lora_hub.local_hub.messages import BodyReader, Request, Response, error_response, header_safe
from phi3_lora_hub.local_hub.requestlog import RequestRecord
from phi3_lora_hub.local_hub.rootdir import (
    DEFAULT_USER,
    ROOT_MARKER,
    LocalHubError,
    check_root,
    root_credentials,
)
from phi3_lora_hub.local_hub.settings import HubSettings

try:  # POSIX only; elsewhere a second server on the same root is not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Host header names always accepted; others only when the operator allows them (``allowed_hosts``)."""
_STOP_GRACE_S = 10.0


def _split_host(value: str) -> tuple[str, str]:
    """``(name, port)`` of a Host header value (``"[::1]:80"`` -> ``("::1", "80")``); the name lower-cased."""
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name.lower(), rest.removeprefix(":") if rest.startswith(":") else rest or ""
    name, colon, port = value.rpartition(":")
    return (name.lower(), port) if colon else (value.lower(), "")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        # A connection that sends nothing (or too slowly) for this long is closed: no thread waits forever.
        self.timeout = self.server.app.settings.connection_timeout_s
        super().setup()

    def version_string(self) -> str:
        return "phi3-lora-hub-local-hub/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the hub keeps its own request log (without tokens)

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # a two-word request line: no headers, no status line back
            self.send_error(400, "HTTP/0.9 is not supported: send 'METHOD /path HTTP/1.1'")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found while parsing the request line or headers, in the same JSON + X-Error-Code form.

        Always a 4xx with an HTTP/1.1 status line (even when the request line was too broken to name a
        version); an HTTP version this server does not speak is a 400 that says which one it does.
        """
        text = message or explain or HTTPStatus(code).phrase
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code, text = 400, f"{text}; this server speaks HTTP/1.0 and HTTP/1.1"
        elif code == HTTPStatus.NOT_IMPLEMENTED:
            code = 405  # an unknown method: this server implements none beyond GET, HEAD, POST, PUT, DELETE, PATCH
        self.request_version = "HTTP/1.1"
        self.close_connection = True
        self._send(error_response(HubHttpError(code, "ProtocolError", f"Malformed HTTP request: {text}")))

    def _serve(self) -> None:
        server = self.server
        raw_path, _, raw_query = self.path.partition("?")
        try:
            reader = BodyReader(self.rfile, self.headers)
            base_url = f"http://{server.host_of(self.headers.get_all('Host'), self.request_version)}"
        except HubHttpError as error:  # the body cannot be framed, or the Host is not this server's
            self.close_connection = True
            self._send(error_response(error))
            return
        request = Request(self.command, raw_path, raw_query, self.headers, reader, base_url)
        with server.tracking_request():
            try:
                response = server.app.handle(request, server.stopping)
                if not reader.finish():  # a body left unread (too large, malformed) ends the connection
                    self.close_connection = True
                self._send(response)
            except OSError:  # the client went away (ConnectionError is an OSError)
                self.close_connection = True

    def _send(self, response: Response) -> None:
        try:
            self._write(response)
        except OSError:  # the client went away before reading the answer
            self.close_connection = True

    def _write(self, response: Response) -> None:
        if response.drop in ("before", "after"):
            self.close_connection = True
            return
        self.send_response(response.status)
        if self.close_connection:
            response.headers["Connection"] = "close"
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(response.content_length))
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.drop == "mid_body":
            self.wfile.write(self._body_bytes(response)[: response.content_length // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if response.file is None:
            self.wfile.write(response.body)
            return
        with open(response.file, "rb") as handle:
            handle.seek(response.offset)
            remaining = response.length
            while remaining > 0:
                piece = handle.read(min(1 << 20, remaining))
                if not piece:
                    raise OSError(f"{response.file} is shorter than expected")
                self.wfile.write(piece)
                remaining -= len(piece)

    @staticmethod
    def _body_bytes(response: Response) -> bytes:
        if response.file is None:
            return response.body
        with open(response.file, "rb") as handle:
            handle.seek(response.offset)
            return handle.read(response.length)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart on the same port while old connections sit in TIME_WAIT

    def __init__(self, port: int, app: HubApp, stopping: threading.Event, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.stopping = stopping
        self.allowed_hosts = allowed_hosts
        self._connections: set[socket.socket] = set()
        self._guard = threading.Condition()
        self._active_requests = 0
        super().__init__((HOST, port), _Handler)

    def host_of(self, values: list[str] | None, version: str) -> str:
        """The request's ``Host`` (``host[:port]``) if it names this server; a 400 ``HubHttpError`` otherwise.

        Only loopback names and the operator's ``allowed_hosts`` are accepted, so a web page cannot reach the
        hub through a name of its own (DNS rebinding), and every URL built on the Host points back here.
        """
        if not values:
            if version == "HTTP/1.0":
                return f"{HOST}:{self.server_port}"
            raise HubHttpError(400, "MissingHost", "An HTTP/1.1 request needs a Host header (RFC 9112 §3.2).")
        value = values[0].strip()
        name, port = _split_host(value)
        if len(values) > 1 or name not in self.allowed_hosts or not (port == "" or port.isdigit()):
            allowed = ", ".join(sorted(self.allowed_hosts))
            raise HubHttpError(
                400,
                "HostNotAllowed",
                f"Host {header_safe(value)!r} is not served here; this hub answers to {allowed} (the operator "
                "can add names with --allowed-host).",
            )
        return value

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._guard:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._guard:
            self._connections.discard(request)
        super().shutdown_request(request)

    @contextlib.contextmanager
    def tracking_request(self) -> Iterator[None]:
        """Count a request as in progress for the duration of the block (``stop()`` waits for none to be)."""
        with self._guard:
            self._active_requests += 1
        try:
            yield
        finally:
            with self._guard:
                self._active_requests -= 1
                self._guard.notify_all()

    def close_connections(self) -> None:
        """Shut down every open client connection, unblocking the threads waiting on them."""
        with self._guard:
            sockets = list(self._connections)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; ``False`` if some still are after ``timeout`` seconds."""
        with self._guard:
            return self._guard.wait_for(lambda: self._active_requests == 0, timeout)


class LocalHub:
    """A local Hugging Face Hub server, for tests, the quickstart and offline use.

    ::

        with LocalHub(root=tmp_path / "hub") as hub:
            os.environ["HF_ENDPOINT"] = hub.url      # before huggingface_hub is imported
            hub.faults.fail("commit", status=500)    # the next commit fails once
            ...

    Content persists under ``root``: after ``stop()``, ``start()`` serves the same repositories on the same
    port, and so does a new ``LocalHub`` on the same root (on the port it is given). The root also keeps its
    random secrets (``credentials``, see ``root_credentials``): without ``tokens``, the root's write and
    read-only tokens of user ``tester`` are accepted (``write_token``, ``read_token``); ``tokens`` maps token
    strings to users instead. ``admin_token`` (default: the root's) protects the ``/_local_hub/`` control
    endpoints. ``settings`` holds the switches (``regular_only``, ``bare_404``, page sizes, body limits...) and
    may be changed at any time. The server binds 127.0.0.1 only and answers requests whose ``Host`` is
    ``127.0.0.1``, ``localhost``, ``[::1]`` or one of ``allowed_hosts``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        port: int = 0,
        tokens: Mapping[str, User] | None = None,
        settings: HubSettings | None = None,
        admin_token: str | None = None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.credentials = root_credentials(self.root)
        """The root's secrets (made at random when the root is new)."""
        self._port = port
        self.settings = settings or HubSettings()
        if tokens is None:
            tokens = {
                self.credentials.write_token: User(DEFAULT_USER, "write"),
                self.credentials.read_token: User(DEFAULT_USER, "read"),
            }
        self.tokens = TokenRegistry(tokens)
        self.admin_token = admin_token or self.credentials.admin_token
        self.allowed_hosts = LOOPBACK_HOSTS | {host.lower() for host in allowed_hosts}
        self._app: HubApp | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock_file: IO[str] | None = None
        self._stopping = threading.Event()
        self.faults = FaultInjector()
        """Fault rules: ``fail``, ``delay``, ``drop``, ``clear`` (see ``phi3_lora_hub.local_hub.faults``)."""

    @property
    def write_token(self) -> str:
        """The root's write token of user ``tester`` (accepted unless ``tokens`` were given)."""
        return self.credentials.write_token

    @property
    def read_token(self) -> str:
        """The root's read-only token of user ``tester`` (accepted unless ``tokens`` were given)."""
        return self.credentials.read_token

    # --- lifecycle -------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port served on (chosen at the first start when 0 was asked; kept across restarts)."""
        if not self._port:
            raise LocalHubError("The local hub has no port yet: start() it first.")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the value for ``HF_ENDPOINT``."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> LocalHub:
        """Serve the root (on the same port as before after a ``stop()``); return ``self``."""
        if self._server is not None:
            return self
        self._prepare_root()
        try:
            if self._app is None:
                self._app = HubApp(
                    self.root,
                    tokens=self.tokens,
                    settings=self.settings,
                    faults=self.faults,
                    admin_token=self.admin_token,
                    url_key=bytes.fromhex(self.credentials.url_key),
                )
            self._stopping.clear()
            try:
                server = _Server(self._port, self._app, self._stopping, self.allowed_hosts)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise LocalHubError(
                        f"Port {self._port} on {HOST} is in use: stop what uses it, or choose another port "
                        "(0 picks a free one)."
                    ) from None
                raise
        except BaseException:
            self._release_root()
            raise
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"local-hub-{self._port}", daemon=True
        )
        self._thread.start()
        logger.debug("local hub serving %s on %s", self.root, self.url)
        return self

    def stop(self) -> None:
        """Stop serving: close the listening socket and open connections, wait for requests in progress."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if not server.wait_idle(_STOP_GRACE_S):
            logger.warning("local hub: requests still running %.0f s after stop()", _STOP_GRACE_S)
        if thread is not None:
            thread.join(_STOP_GRACE_S)
        self._server = self._thread = None
        self._release_root()

    def restart(self) -> None:
        """``stop()`` then ``start()``: same root, same port."""
        self.stop()
        self.start()

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare_root(self) -> None:
        marker = self.root / ROOT_MARKER
        check_root(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            marker.write_text(json.dumps({"format": 1}) + "\n")
        lock_file = open(self.root / ".lock", "w")  # noqa: SIM115 - held open until stop()
        if fcntl is not None:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock_file.close()
                raise LocalHubError(
                    f"Another local hub is serving {self.root}: stop it first or choose another root."
                ) from None
        self._lock_file = lock_file
        # Leftovers of writes interrupted by a crash are never referenced by a commit: safe to drop.
        if (self.root / "repos").is_dir():
            remove_stale_temporaries(self.root / "repos")
        shutil.rmtree(self.root / "tmp", ignore_errors=True)

    def _release_root(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    # --- users and tokens ------------------------------------------------------------------------------------

    def add_token(self, token: str, user: str, role: Role = "write", orgs: tuple[str, ...] = ()) -> None:
        """Let ``token`` authenticate ``user`` with ``role`` (``"read"`` or ``"write"``)."""
        self.tokens.add(token, User(user, role, tuple(orgs)))

    def create_user(self, name: str, *, role: Role = "write", orgs: tuple[str, ...] = ()) -> str:
        """Create a fresh random token for user ``name`` and return it."""
        return self.tokens.new_token(User(name, role, tuple(orgs)))

    def revoke_token(self, token: str) -> None:
        """Make ``token`` unknown (requests with it get 401)."""
        self.tokens.revoke(token)

    # --- helpers for tests -----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests answered so far (oldest first), without tokens or bodies."""
        return self._app.log.records() if self._app else []

    def clear_requests(self) -> None:
        if self._app is not None:
            self._app.log.clear()

    def new_repo_id(self, prefix: str = "repo", namespace: str = DEFAULT_USER) -> str:
        """A repo id nobody has used yet, e.g. ``tester/repo-3f9a1c2b`` (the repo is not created)."""
        return f"{namespace}/{prefix}-{uuid.uuid4().hex[:8]}"

    def env(self, token: str | None = None) -> dict[str, str]:
        """Environment variables that point a client at this hub (set them before importing huggingface_hub).

        ``HF_TOKEN`` is ``token``, or the root's write token when ``token`` is ``None``.
        """
        return {"HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": token or self.write_token}
