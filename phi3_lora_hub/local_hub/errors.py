"""``HubHttpError``, the one exception type endpoints raise (an HTTP error response, unlike the client-side
``phi3_lora_hub.hub.errors.HubError``), and constructors for the errors the Hub client understands.

``huggingface_hub`` maps errors to exception classes through the ``X-Error-Code`` response header
(``RepoNotFound`` -> ``RepositoryNotFoundError``, ``RevisionNotFound`` -> ``RevisionNotFoundError``,
``EntryNotFound`` -> ``RemoteEntryNotFoundError``). Every error this server sends carries a code, so a client
never has to guess from a bare status.
"""

from __future__ import annotations

from collections.abc import Mapping


class HubHttpError(Exception):
    """An HTTP error response: status, ``X-Error-Code``, a message for the user, extra headers and body fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.body = dict(body or {})


def bad_request(message: str) -> HubHttpError:
    return HubHttpError(400, "BadRequest", message)


def unauthorized(message: str = "Invalid credentials in Authorization header") -> HubHttpError:
    # The client recognises this exact message as "bad token" and never mistakes it for a missing repo.
    return HubHttpError(401, "Unauthorized", message)


def forbidden(message: str) -> HubHttpError:
    return HubHttpError(403, "Forbidden", message)


def repo_not_found(repo_type: str, repo_id: str) -> HubHttpError:
    return HubHttpError(
        404,
        "RepoNotFound",
        f"Repository not found: {repo_type} '{repo_id}'. Check the repo id and repo_type, create it with "
        "create_repo(), or use a token that can read it if it is private.",
    )


def revision_not_found(revision: str, commit: str | None = None) -> HubHttpError:
    headers = {"X-Repo-Commit": commit} if commit else None
    return HubHttpError(
        404,
        "RevisionNotFound",
        f"Invalid rev id: {revision!r} is not a branch, tag or commit of this repository. "
        "List them with list_repo_refs(); create a branch with create_branch().",
        headers,
    )


def entry_not_found(path: str, commit: str, what: str = "file") -> HubHttpError:
    # X-Repo-Commit lets the client cache the file's absence for this commit (`.no_exist`).
    return HubHttpError(
        404,
        "EntryNotFound",
        f"A {what} with this name doesn't exist: {path!r} at commit {commit}.",
        {"X-Repo-Commit": commit},
    )


def conflict(message: str, **body: str) -> HubHttpError:
    # `body` carries e.g. the existing repo's url, which `create_repo(exist_ok=True)` reads from the 409.
    return HubHttpError(409, "Conflict", message, body=body)


def not_implemented(message: str) -> HubHttpError:
    return HubHttpError(501, "NotImplemented", message)
