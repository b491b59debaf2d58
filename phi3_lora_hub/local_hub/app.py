"""The hub application: state (storage, tokens, settings, faults, log) and request handling, without sockets.

``HubApp.handle`` is the single entry point: it applies a matching fault rule, authenticates the caller,
routes the request, turns every failure into a JSON error with ``X-Error-Code``, and logs the outcome.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from pathlib import Path

from phi3_lora_hub.local_hub import api_admin, api_files, api_repos, api_upload, errors, pages
from phi3_lora_hub.local_hub.auth import TokenRegistry, parse_authorization
from phi3_lora_hub.local_hub.blobs import BlobStore
from phi3_lora_hub.local_hub.errors import HubHttpError
from phi3_lora_hub.local_hub.faults import FaultInjector, FaultRule
from phi3_lora_hub.local_hub.lfs import MultipartSessions, UrlSigner
from phi3_lora_hub.local_hub.messages import Request, Response, error_response
from phi3_lora_hub.local_hub.repos import RepoStore
from phi3_lora_hub.local_hub.requestlog import RequestLog, RequestRecord, redact
from phi3_lora_hub.local_hub.router import GIT_REPO, REPO, Router
from phi3_lora_hub.local_hub.settings import HubSettings

logger = logging.getLogger(__name__)


def build_router() -> Router:
    """Every endpoint of the local hub, in matching order."""
    router = Router()
    add = router.add
    admin = "/_local_hub"
    add("GET", f"{admin}/health", api_admin.health)
    add("GET", f"{admin}/faults", api_admin.list_faults, admin=True)
    add("POST", f"{admin}/faults", api_admin.add_fault, admin=True)
    add("DELETE", f"{admin}/faults", api_admin.clear_faults, admin=True)
    add("DELETE", f"{admin}/faults/(?P<id>[0-9]+)", api_admin.remove_fault, admin=True)
    add("GET", f"{admin}/settings", api_admin.get_settings, admin=True)
    add("POST PATCH", f"{admin}/settings", api_admin.update_settings, admin=True)
    add("GET", f"{admin}/requests", api_admin.list_requests, admin=True)
    add("DELETE", f"{admin}/requests", api_admin.clear_requests, admin=True)

    lfs = f"/_lfs/{REPO}"
    lfs_object = rf"{lfs}/objects/(?P<oid>[0-9a-f]{{64}})"
    add("PUT", lfs_object, api_upload.lfs_put_object, signed=True, body_limit=None)
    add("GET", lfs_object, api_upload.lfs_get_object, signed=True)
    add("POST", f"{lfs_object}/verify", api_upload.lfs_verify, signed=True)
    multipart = rf"{lfs}/multipart/(?P<upload>[0-9a-f]{{32}})"
    add("PUT", f"{multipart}/(?P<part>[1-9][0-9]{{0,5}})", api_upload.lfs_put_part, signed=True, body_limit=None)
    add("POST", multipart, api_upload.lfs_complete_multipart, signed=True)

    add("GET", "/api/whoami-v2", api_repos.whoami)
    add("POST", "/api/repos/create", api_repos.create_repo)
    add("DELETE", "/api/repos/delete", api_repos.delete_repo)
    add("POST", "/api/repos/move", api_repos.move_repo)
    add("POST", "/api/validate-yaml", api_repos.validate_yaml)
    add("GET", "/api/(?P<type>models|datasets|spaces)", api_repos.list_repos)

    api = f"/api/{REPO}"
    rev = "(?P<rev>[^/]+)"
    ref = "(?P<ref>[^/]+)"
    add("GET", api, api_repos.repo_info)
    add("GET", f"{api}/revision/{rev}", api_repos.repo_info)
    add("PUT", f"{api}/settings", api_repos.update_settings)
    add("GET", f"{api}/refs", api_repos.list_refs)
    add("GET", f"{api}/commits/{rev}", api_repos.list_commits)
    add("GET", f"{api}/tree/{rev}(?:/(?P<path>.+))?", api_repos.list_tree)
    add("POST", f"{api}/paths-info/{rev}", api_repos.paths_info)
    add("POST", f"{api}/branch/{ref}", api_repos.create_branch)
    add("DELETE", f"{api}/branch/{ref}", api_repos.delete_branch)
    add("POST", f"{api}/tag/{ref}", api_repos.create_tag)
    add("DELETE", f"{api}/tag/{ref}", api_repos.delete_tag)
    add("POST", f"{api}/preupload/{rev}", api_upload.preupload)
    add("POST", f"{api}/commit/{rev}", api_upload.commit, body_limit="max_commit_bytes")
    add("GET", f"{api}/xet-(?:read|write)-token(?:/[^/]*)?", api_upload.xet_token)
    add("GET POST", f"{api}/discussions(?:/.*)?", api_upload.discussions)

    add("POST", rf"/{GIT_REPO}\.git/info/lfs/objects/batch", api_upload.lfs_batch)
    add("HEAD GET", f"/{GIT_REPO}/resolve/{rev}/(?P<path>.+)", api_files.resolve)

    page = f"/(?!api/){GIT_REPO}"  # web pages at the Hub's repository addresses
    add("GET", page, pages.repo_page)
    add("GET", f"{page}/tree/{rev}(?:/(?P<path>.+))?", pages.tree_page)
    add("GET", f"{page}/blob/{rev}/(?P<path>.+)", pages.blob_page)
    add("GET", f"{page}/commit/{rev}", pages.commit_page)
    return router


class HubApp:
    """Everything a running hub knows. One instance per server; it outlives restarts of the socket server."""

    def __init__(
        self,
        root: Path,
        *,
        tokens: TokenRegistry,
        settings: HubSettings,
        faults: FaultInjector,
        admin_token: str,
        url_key: bytes,
    ) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.repos = RepoStore(root, self.blobs)
        self.tokens = tokens
        self.settings = settings
        self.admin_token = admin_token
        self.faults = faults
        self.signer = UrlSigner(url_key)
        self.multipart = MultipartSessions(root)
        self.log = RequestLog()
        self.router = build_router()

    def handle(self, request: Request, stopping: threading.Event) -> Response:
        """Answer ``request``. ``stopping`` interrupts injected delays when the server shuts down."""
        started = time.monotonic()
        # Control endpoints are exempt, so a test can always clear the faults it set.
        controlled = request.raw_path.startswith("/_local_hub/")
        rule = None if controlled else self.faults.take(request.method, request.raw_path)
        try:
            response = self._dispatch(request) if rule is None else self._with_fault(request, rule, stopping)
        except ConnectionError:  # the client went away in the middle of its request
            self._record(request, None, started, rule)
            raise
        if self.settings.bare_404 and response.status == 404:
            response.headers.pop("X-Error-Code", None)
            response.headers.pop("X-Error-Message", None)
        self._record(request, None if response.drop in ("before", "after") else response, started, rule)
        return response

    def _record(self, request: Request, response: Response | None, started: float, rule: FaultRule | None) -> None:
        self.log.append(
            RequestRecord(
                method=request.method,
                path=redact(request.target),
                status=response.status if response else None,
                user=request.user.name if request.user else None,
                duration_s=round(time.monotonic() - started, 4),
                request_id=request.headers.get("X-Request-Id") or request.headers.get("X-Amzn-Trace-Id"),
                fault=rule.id if rule else None,
                error_code=response.headers.get("X-Error-Code") if response else None,
            )
        )

    def _with_fault(self, request: Request, rule: FaultRule, stopping: threading.Event) -> Response:
        if rule.stage == "before":
            if rule.delay and stopping.wait(rule.delay):
                return Response(drop="before")  # the server is stopping: the client sees a closed connection
            if rule.drop:
                return Response(drop="before")
            if rule.status is not None:
                return _injected(rule)
            return self._dispatch(request)
        response = self._dispatch(request)
        if rule.delay and stopping.wait(rule.delay):
            return Response(drop="after")
        if rule.drop:
            response.drop = rule.stage
            return response
        return _injected(rule) if rule.status is not None else response

    def _dispatch(self, request: Request) -> Response:
        try:
            route, params = self.router.resolve(request.method, request.raw_path)
            if route.body_limit is not None:
                request.body_reader.limit = getattr(self.settings, route.body_limit)
            if route.admin:
                self._check_admin(request)
            elif not route.signed:
                request.user = self.tokens.lookup(parse_authorization(request.headers.get("Authorization")))
            return route.handler(self, request, params)
        except HubHttpError as error:
            return error_response(error)
        except ConnectionError:
            raise  # the client went away: nothing to answer
        except Exception as error:
            logger.exception("local hub: %s %s failed", request.method, request.raw_path)
            return error_response(
                HubHttpError(
                    500,
                    "InternalError",
                    f"The local hub failed on {request.method} {request.raw_path}: {type(error).__name__}: {error}. "
                    "This is a bug in the local hub; please report it with this message.",
                )
            )

    def _check_admin(self, request: Request) -> None:
        token = parse_authorization(request.headers.get("Authorization"))
        if token is None or not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise errors.unauthorized("Server control needs the admin token: Authorization: Bearer <admin token>")


def _injected(rule: FaultRule) -> Response:
    message = rule.message or f"Fault injected by the local hub (rule #{rule.id})"
    return error_response(HubHttpError(rule.status or 500, "InjectedFault", message, rule.headers))
