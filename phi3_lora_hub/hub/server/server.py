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
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from phi3_lora_hub.errors import Phi3LoraHubError
from phi3_lora_hub.hub.server.app import HubApp
from phi3_lora_hub.hub.server.auth import Role, TokenRegistry, User
from phi3_lora_hub.hub.server.errors import HubError
from phi3_lora_hub.hub.server.faults import FaultInjector
from phi3_lora_hub.hub.server.fsutil import remove_stale_temporaries
from phi3_lora_hub.hub.server.messages import BodyReader, Request, Response, error_response
from phi3_lora_hub.hub.server.requestlog import RequestRecord
from phi3_lora_hub.hub.server.settings import HubSettings

try:  # POSIX only; elsewhere a second server on the same root is not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
ROOT_MARKER = "local-hub.json"
DEFAULT_USER = "tester"
DEFAULT_WRITE_TOKEN = "hf_local_write_token_0000000000000000"
"""Write token of user ``tester`` (a default token: fine on loopback, never use it anywhere else)."""
DEFAULT_READ_TOKEN = "hf_local_read_token_00000000000000000"
"""Read-only token of user ``tester``: can read everything ``tester`` can, writes get 403."""
DEFAULT_ADMIN_TOKEN = "hf_local_admin_token_0000000000000000"
"""Token for the ``/_local_hub/`` control endpoints (faults, settings, request log)."""
_STOP_GRACE_S = 10.0


class LocalHubError(Phi3LoraHubError):
    """The local hub cannot start or was used wrongly; the message says what to change."""


def default_tokens() -> dict[str, User]:
    """The tokens a hub gets when none are given: one write and one read-only token of user ``tester``."""
    return {DEFAULT_WRITE_TOKEN: User(DEFAULT_USER, "write"), DEFAULT_READ_TOKEN: User(DEFAULT_USER, "read")}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "phi3-lora-hub-local-hub/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the hub keeps its own request log (without tokens)

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found while parsing the request line or headers, in the same JSON + X-Error-Code form."""
        text = message or explain or HTTPStatus(code).phrase
        self.close_connection = True
        self._send(error_response(HubError(code, "ProtocolError", f"Malformed HTTP request: {text}")))

    def _serve(self) -> None:
        server = self.server
        raw_path, _, raw_query = self.path.partition("?")
        reader = BodyReader(self.rfile, self.headers)
        host = self.headers.get("Host") or f"{HOST}:{server.server_port}"
        request = Request(self.command, raw_path, raw_query, self.headers, reader, f"http://{host}")
        with server.tracking_request():
            try:
                response = server.app.handle(request, server.stopping)
                if not reader.consumed:
                    reader.discard()  # keep the connection in sync for the next request
                self._send(response)
            except OSError:  # the client went away (ConnectionError is an OSError)
                self.close_connection = True

    def _send(self, response: Response) -> None:
        if response.drop in ("before", "after"):
            self.close_connection = True
            return
        self.send_response(response.status)
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

    def __init__(self, port: int, app: HubApp, stopping: threading.Event) -> None:
        self.app = app
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._guard = threading.Condition()
        self._active_requests = 0
        super().__init__((HOST, port), _Handler)

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
    port, and so does a new ``LocalHub`` on the same root (on the port it is given). ``tokens`` maps token
    strings to users (default: a write and a read-only token of user ``tester``, ``DEFAULT_WRITE_TOKEN`` and
    ``DEFAULT_READ_TOKEN``). ``settings`` holds the switches (``regular_only``, ``bare_404``, page sizes...)
    and may be changed at any time. ``admin_token`` protects the ``/_local_hub/`` control endpoints
    (``None`` disables them). The server binds 127.0.0.1 only.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        port: int = 0,
        tokens: Mapping[str, User] | None = None,
        settings: HubSettings | None = None,
        admin_token: str | None = DEFAULT_ADMIN_TOKEN,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self._port = port
        self.settings = settings or HubSettings()
        self.tokens = TokenRegistry(default_tokens() if tokens is None else tokens)
        self.admin_token = admin_token
        self._app: HubApp | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock_file: IO[str] | None = None
        self._stopping = threading.Event()
        self.faults = FaultInjector()
        """Fault rules: ``fail``, ``delay``, ``drop``, ``clear`` (see ``phi3_lora_hub.hub.server.faults``)."""

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
                )
            self._stopping.clear()
            try:
                server = _Server(self._port, self._app, self._stopping)
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
        if self.root.exists() and not self.root.is_dir():
            raise LocalHubError(f"{self.root} is a file; the hub root must be a directory.")
        if self.root.is_dir() and not marker.is_file() and any(self.root.iterdir()):
            raise LocalHubError(
                f"{self.root} is not empty and is not a local hub root (no {ROOT_MARKER}): pass an empty or "
                "new directory, so that no unrelated files are mixed with the hub's storage."
            )
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

    def env(self, token: str | None = DEFAULT_WRITE_TOKEN) -> dict[str, str]:
        """Environment variables that point a client at this hub (set them before importing huggingface_hub)."""
        variables = {"HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0"}
        if token is not None:
            variables["HF_TOKEN"] = token
        return variables
