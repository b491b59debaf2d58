"""Endpoints about repositories and their history: identity, create/delete, info, refs, commits, tree, cards."""

from __future__ import annotations

import hashlib
import html
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.auth import can_read, require_read, require_write
from phi3_lora_hub.local_hub.cards import card_data, validate_card
from phi3_lora_hub.local_hub.messages import Request, Response, error_response, json_response
from phi3_lora_hub.local_hub.objects import (
    Commit,
    FileEntry,
    directories,
    directory_oid,
    is_directory,
    list_directory,
    tree_item_json,
)
from phi3_lora_hub.local_hub.repos import REPO_TYPES, SPACE_SDKS, Repo, RepoMeta, validate_repo_name
from phi3_lora_hub.local_hub.router import Params, segment
from phi3_lora_hub.local_hub.state import HubState
from phi3_lora_hub.run_file_names import CARD_NAME

_PLURALS = {f"{repo_type}s": repo_type for repo_type in REPO_TYPES}
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_MAX_CARD_BYTES = 1_000_000
_MAX_PATHS_INFO = 1000


# --- shared helpers --------------------------------------------------------------------------------------------


def repo_type_of(params: Params) -> str:
    """The singular repo type named by a route: ``type`` (``models``...) or a ``prefix`` (``datasets``...)."""
    if "type" in params:
        return _PLURALS[params["type"]]
    return _PLURALS[params["prefix"]] if "prefix" in params else "model"


def open_repo(app: HubState, request: Request, params: Params, *, write: bool = False) -> Repo:
    """The repository a route names, checked readable by the caller (404) and, with ``write``, writable (401/403)."""
    repo = app.repos.open(repo_type_of(params), f"{segment(params, 'ns')}/{segment(params, 'name')}")
    require_read(request.user, repo.meta)
    if write:
        require_write(request.user, repo.meta.namespace)
    return repo


def repo_url(base_url: str, meta: RepoMeta) -> str:
    """The web URL of a repository, as the Hub returns it (``RepoUrl`` parses it back)."""
    return f"{base_url}/{_URL_PREFIXES[meta.repo_type]}{meta.repo_id}"


def _page(
    request: Request, params: Params, endpoint: str, commit: Commit, items: list[Any], size: int
) -> tuple[list[Any], dict[str, str]]:
    """One page of ``items`` at the ``cursor`` query parameter, and the ``Link: rel="next"`` header.

    The next-page URL names the commit instead of the requested revision, so a branch that moves while a
    client pages through a listing cannot mix two versions in one answer.
    """
    try:
        start = max(0, int(request.param("cursor") or 0))
    except ValueError:
        raise errors.bad_request("Invalid pagination cursor; follow the Link header of the previous page.") from None
    end = start + size
    if end >= len(items):
        return items[start:end], {}
    query = {name: values[0] for name, values in request.query.items()}
    query["cursor"] = str(end)
    path = f"/api/{params['type']}/{params['ns']}/{params['name']}/{endpoint}/{commit.oid}"
    if "path" in params:
        path += f"/{params['path']}"
    return items[start:end], {"Link": f'<{request.base_url}{path}?{urlencode(query)}>; rel="next"'}


def card_text(app: HubState, entry: FileEntry | None) -> str | None:
    """The text of a ``README.md`` entry; ``None`` when there is none or it is too large to be a card."""
    if entry is None or entry.size > _MAX_CARD_BYTES:
        return None
    return app.blobs.read(entry.sha256).decode("utf-8", "replace")


def read_card(app: HubState, commit: Commit) -> dict[str, Any] | None:
    """The README.md metadata of a commit (``None`` when absent, too large, unparsable or refused)."""
    text = card_text(app, commit.tree.get(CARD_NAME))
    return None if text is None else card_data(text)


def last_commits(repo: Repo, head: Commit, items: list[tuple[str, str]]) -> dict[str, Commit]:
    """For each ``(kind, path)`` item of ``head``, the newest commit (first-parent history) that changed it."""

    def fingerprint(commit: Commit | None, kind: str, path: str) -> str | None:
        if commit is None:
            return None
        if kind == "file":
            entry = commit.tree.get(path)
            return entry.git_oid if entry else None
        return directory_oid(commit.tree, path) if is_directory(commit.tree, path) else None

    pending = {path: kind for kind, path in items}
    found: dict[str, Commit] = {}
    for commit in repo.history(head):
        if not pending:
            break
        parent = repo.commit(commit.parents[0]) if commit.parents else None
        for path, kind in list(pending.items()):
            if fingerprint(commit, kind, path) != fingerprint(parent, kind, path):
                found[path] = commit
                del pending[path]
    return found


# --- identity --------------------------------------------------------------------------------------------------


def whoami(app: HubState, request: Request, params: Params) -> Response:
    """``GET /api/whoami-v2``: the token's user, organisations and role; 401 without a token."""
    user = request.user
    if user is None:
        raise errors.unauthorized("whoami needs a token: pass one (HF_TOKEN or token=...).")
    return json_response(
        {
            "type": "user",
            "id": hashlib.sha1(user.name.encode(), usedforsecurity=False).hexdigest()[:24],
            "name": user.name,
            "fullname": user.name,
            "isPro": False,
            "orgs": [{"type": "org", "name": org, "fullname": org} for org in user.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": f"{user.name}-token", "role": user.role}},
        }
    )


# --- repository lifecycle ----------------------------------------------------------------------------------


def _repo_target(request: Request) -> tuple[str, str, dict[str, Any]]:
    """``(repo_type, repo_id, body)`` of a create/delete request; the namespace defaults to the caller.

    400 when the name or namespace is not a valid repo name part (a ``/`` or ``..`` never reaches storage).
    """
    body = request.json_object()
    name, organization = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not name:
        raise errors.bad_request('The request needs "name" (the repository name, without namespace).')
    if organization is not None and not isinstance(organization, str):
        raise errors.bad_request('"organization" must be a string or null.')
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise errors.bad_request(f'"type" must be one of {", ".join(REPO_TYPES)}, got {repo_type!r}.')
    if organization is None and request.user is None:
        raise errors.unauthorized("Authentication required: pass a token with the write role.")
    namespace = organization or request.user.name  # type: ignore[union-attr]
    validate_repo_name(namespace, name)
    return repo_type, f"{namespace}/{name}", body


def create_repo(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/repos/create``: create a repo (namespace defaults to the caller); 409 with ``url`` if taken."""
    repo_type, repo_id, body = _repo_target(request)
    namespace = repo_id.split("/")[0]
    user = require_write(request.user, namespace)
    visibility = body.get("visibility")
    private = body.get("private") is True or visibility == "private"
    sdk = body.get("sdk")
    if repo_type == "space" and sdk not in SPACE_SDKS:
        raise errors.bad_request(f'A Space needs "sdk", one of {", ".join(SPACE_SDKS)}; got {sdk!r}.')
    meta = RepoMeta(repo_type, repo_id, private=private, sdk=sdk if repo_type == "space" else None)
    try:
        app.repos.create(meta, author=user.name)
    except errors.HubHttpError as error:
        if error.status == 409:  # `create_repo(exist_ok=True)` reads the existing repo's url (any letter case)
            existing = replace(meta, repo_id=app.repos.find(repo_type, repo_id) or repo_id)
            raise errors.conflict(error.message, url=repo_url(request.base_url, existing)) from None
        raise
    return json_response({"url": repo_url(request.base_url, meta), "name": repo_id, "id": repo_id})


def move_repo(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/repos/move`` (``fromRepo``, ``toRepo``, ``type``): rename or transfer a repo; 409 if taken."""
    body = request.json_object()
    source, target, repo_type = body.get("fromRepo"), body.get("toRepo"), body.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise errors.bad_request(f'"type" must be one of {", ".join(REPO_TYPES)}, got {repo_type!r}.')
    for label, value in (("fromRepo", source), ("toRepo", target)):
        if not isinstance(value, str) or value.count("/") != 1:
            raise errors.bad_request(f'"{label}" must be a repo id "namespace/name", got {value!r}.')
        validate_repo_name(*value.split("/"))
    repo = app.repos.open(repo_type, source)
    require_read(request.user, repo.meta)
    require_write(request.user, repo.meta.namespace)
    require_write(request.user, target.split("/")[0])
    meta = app.repos.move(repo_type, repo.meta.repo_id, target)
    return json_response({"url": repo_url(request.base_url, meta)})


def delete_repo(app: HubState, request: Request, params: Params) -> Response:
    """``DELETE /api/repos/delete``: delete a repo; 404 ``RepoNotFound`` if missing (``missing_ok`` relies on it)."""
    repo_type, repo_id, _ = _repo_target(request)
    repo = app.repos.open(repo_type, repo_id)
    require_read(request.user, repo.meta)
    require_write(request.user, repo.meta.namespace)
    app.repos.delete(repo_type, repo_id)
    return json_response({})


def update_settings(app: HubState, request: Request, params: Params) -> Response:
    """``PUT /api/{type}s/{repo}/settings``: change ``private``/``visibility``/``gated``."""
    repo = open_repo(app, request, params, write=True)
    body = request.json_object()
    changes: dict[str, Any] = {}
    if "private" in body:
        if not isinstance(body["private"], bool):
            raise errors.bad_request('"private" must be true or false.')
        changes["private"] = body["private"]
    if "visibility" in body:
        if body["visibility"] not in ("public", "private"):
            raise errors.bad_request('"visibility" must be "public" or "private".')
        changes["private"] = body["visibility"] == "private"
    if "gated" in body:
        if body["gated"] not in (False, "auto", "manual"):
            raise errors.bad_request('"gated" must be false, "auto" or "manual".')
        changes["gated"] = body["gated"]
    meta = repo.update_meta(**changes)
    return json_response({"private": meta.private, "gated": meta.gated})


# --- reading -------------------------------------------------------------------------------------------------


def _info_json(app: HubState, repo: Repo, commit: Commit, *, files_metadata: bool) -> dict[str, Any]:
    meta = repo.meta
    card = read_card(app, commit)
    siblings = []
    for path, entry in sorted(commit.tree.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if files_metadata:
            sibling.update(size=entry.size, blobId=entry.git_oid)
            if entry.lfs:
                sibling["lfs"] = entry.lfs_info(sibling=True)
        siblings.append(sibling)
    tags = (card or {}).get("tags") or []
    info: dict[str, Any] = {
        "_id": hashlib.sha1(
            f"{meta.repo_type}/{meta.repo_id}@{meta.created_at}".encode(), usedforsecurity=False
        ).hexdigest()[:24],
        "id": meta.repo_id,
        "author": meta.namespace,
        "sha": commit.oid,
        "lastModified": commit.date,
        "createdAt": meta.created_at,
        "private": meta.private,
        "gated": meta.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [tags] if isinstance(tags, str) else [tag for tag in tags if isinstance(tag, str)],
        "siblings": siblings,
        "usedStorage": sum(entry.size for entry in commit.tree.values()),
    }
    if card is not None:
        info["cardData"] = card
        if meta.repo_type == "model":
            for key in ("library_name", "pipeline_tag"):
                if isinstance(card.get(key), str):
                    info[key] = card[key]
    if meta.repo_type == "space":
        info["sdk"] = (card or {}).get("sdk") or meta.sdk
    return info


def repo_info(app: HubState, request: Request, params: Params) -> Response:
    """``GET /api/{type}s/{repo}[/revision/{rev}]``: id, ``sha`` of the revision, siblings, card data."""
    repo = open_repo(app, request, params)
    commit = repo.resolve(segment(params, "rev", "main"))
    return json_response(_info_json(app, repo, commit, files_metadata=request.flag("blobs")))


def list_repos(app: HubState, request: Request, params: Params) -> Response:
    """``GET /api/{type}s?author=&search=&limit=``: the readable repos, sorted by id."""
    repo_type = repo_type_of(params)
    author, search = request.param("author"), (request.param("search") or "").lower()
    try:
        limit = int(request.param("limit") or 1000)
    except ValueError:
        raise errors.bad_request('"limit" must be an integer.') from None
    listed = []
    for meta in app.repos.list(repo_type):
        if not can_read(request.user, meta) or (author and meta.namespace != author):
            continue
        if search and search not in meta.repo_id.lower():
            continue
        repo = app.repos.open(repo_type, meta.repo_id)
        head = repo.resolve("main")
        listed.append(
            {
                "_id": hashlib.sha1(meta.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
                "id": meta.repo_id,
                "author": meta.namespace,
                "private": meta.private,
                "createdAt": meta.created_at,
                "lastModified": head.date,
                "downloads": 0,
                "likes": 0,
                "tags": [],
            }
        )
    return json_response(listed[:limit])


def list_refs(app: HubState, request: Request, params: Params) -> Response:
    """``GET /api/{type}s/{repo}/refs[?include_prs=1]``: branches, tags, converts (and PR refs)."""
    repo = open_repo(app, request, params)
    refs = repo.refs()
    answer: dict[str, Any] = {
        "branches": [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid} for name, oid in sorted(refs.heads.items())
        ],
        "converts": [],
        "tags": [
            {"name": name, "ref": f"refs/tags/{name}", "targetCommit": oid} for name, oid in sorted(refs.tags.items())
        ],
    }
    if request.flag("include_prs"):
        answer["pullRequests"] = [
            {"name": f"refs/pr/{number}", "ref": f"refs/pr/{number}", "targetCommit": oid}
            for number, oid in sorted(refs.prs.items())
        ]
    return json_response(answer)


def list_commits(app: HubState, request: Request, params: Params) -> Response:
    """``GET /api/{type}s/{repo}/commits/{rev}``: first-parent history, newest first, paginated."""
    repo = open_repo(app, request, params)
    start = repo.resolve(segment(params, "rev", "main"))
    formatted = "formatted" in request.query.get("expand[]", [])
    items = []
    for commit in repo.history(start):
        item: dict[str, Any] = {
            "id": commit.oid,
            "title": commit.title,
            "message": commit.message,
            "date": commit.date,
            "authors": [{"user": commit.author}],
        }
        if formatted:
            item["formatted"] = {"title": html.escape(commit.title), "message": html.escape(commit.message)}
        items.append(item)
    page, headers = _page(request, params, "commits", start, items, app.settings.commits_page_size)
    return json_response(page, headers=headers)


def list_tree(app: HubState, request: Request, params: Params) -> Response:
    """``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``: files and folders, paginated; 404 ``EntryNotFound``."""
    repo = open_repo(app, request, params)
    commit = repo.resolve(segment(params, "rev"))
    path = segment(params, "path").strip("/")
    if path in commit.tree:
        raise errors.entry_not_found(path, commit.oid, what="folder (it is a file)")
    if not is_directory(commit.tree, path):
        raise errors.entry_not_found(path, commit.oid, what="folder")
    expand = request.flag("expand")
    items = list_directory(commit.tree, path, recursive=request.flag("recursive"))
    size = app.settings.tree_expand_page_size if expand else app.settings.tree_page_size
    page, headers = _page(request, params, "tree", commit, items, size)
    found = last_commits(repo, commit, page) if expand else {}
    return json_response(
        [tree_item_json(commit.tree, kind, item, found.get(item)) for kind, item in page], headers=headers
    )


def paths_info(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/{type}s/{repo}/paths-info/{rev}`` (form ``paths=``): entries of the paths that exist."""
    repo = open_repo(app, request, params)
    commit = repo.resolve(segment(params, "rev"))
    form = request.form()
    expand = (form.get("expand") or ["false"])[0].lower() in ("1", "true")
    wanted = list(dict.fromkeys(raw.strip("/") for raw in form.get("paths", [])))
    if len(wanted) > _MAX_PATHS_INFO:
        raise errors.bad_request(f"Ask for at most {_MAX_PATHS_INFO} paths per paths-info request.")
    folders = directories(commit.tree)
    items: list[tuple[str, str]] = []
    for path in wanted:
        if path in commit.tree:
            items.append(("file", path))
        elif path in folders:
            items.append(("directory", path))
    found = last_commits(repo, commit, items) if expand else {}
    return json_response([tree_item_json(commit.tree, kind, path, found.get(path)) for kind, path in items])


# --- refs ----------------------------------------------------------------------------------------------------


def create_branch(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/{type}s/{repo}/branch/{branch}`` (``startingPoint``): 409 if the branch exists."""
    repo = open_repo(app, request, params, write=True)
    body = request.json_object()
    start = body.get("startingPoint")
    if start is not None and not isinstance(start, str):
        raise errors.bad_request('"startingPoint" must be a revision (string).')
    repo.create_branch(segment(params, "ref"), start)
    return json_response({})


def delete_branch(app: HubState, request: Request, params: Params) -> Response:
    """``DELETE /api/{type}s/{repo}/branch/{branch}``."""
    open_repo(app, request, params, write=True).delete_branch(segment(params, "ref"))
    return json_response({})


def create_tag(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/{type}s/{repo}/tag/{rev}`` (``{"tag": name}``): 409 if the tag exists."""
    repo = open_repo(app, request, params, write=True)
    tag = request.json_object().get("tag")
    if not isinstance(tag, str):
        raise errors.bad_request('The request needs "tag" (the tag name).')
    repo.create_tag(tag, segment(params, "ref"))
    return json_response({})


def delete_tag(app: HubState, request: Request, params: Params) -> Response:
    """``DELETE /api/{type}s/{repo}/tag/{tag}``."""
    open_repo(app, request, params, write=True).delete_tag(segment(params, "ref"))
    return json_response({})


# --- cards ---------------------------------------------------------------------------------------------------


def validate_yaml(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/validate-yaml``: check README metadata; always JSON (text only if ``Accept: text/plain``)."""
    body = request.json_object()
    content, repo_type = body.get("content"), body.get("repoType") or "model"
    if not isinstance(content, str):
        raise errors.bad_request('The request needs "content" (the README.md text).')
    check = validate_card(content, repo_type)
    if check.errors:
        message = "\n".join(f"- {error}" for error in check.errors)
        # `ModelCard.validate` asks for text and shows it; `create_commit` reads JSON before checking the status.
        if request.headers.get("Accept", "").strip().lower() == "text/plain":
            return error_response(errors.HubHttpError(400, "InvalidMetadata", message), plain_text=True)
        headers = {"X-Error-Code": "InvalidMetadata", "X-Error-Message": "Invalid metadata in README.md"}
        return json_response(check.to_json(), 400, headers)
    return json_response(check.to_json())
