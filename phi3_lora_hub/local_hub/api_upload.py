"""Endpoints that write content: preupload, NDJSON commits, and the LFS batch and transfer API."""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from phi3_lora_hub.atomic_write import atomic_writer
from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.api_repos import card_text, open_repo, repo_type_of, repo_url
from phi3_lora_hub.local_hub.blobs import SHA256_RE, BlobMismatchError
from phi3_lora_hub.local_hub.cards import metadata_refusal
from phi3_lora_hub.local_hub.lfs import part_etag
from phi3_lora_hub.local_hub.messages import Request, Response, json_response, parse_json
from phi3_lora_hub.local_hub.objects import Commit, FileEntry
from phi3_lora_hub.local_hub.patterns import PATTERN_FILES, check_patterns, choose_upload_mode, is_ignored
from phi3_lora_hub.local_hub.repos import (
    AddFile,
    CommitOperation,
    DeleteFile,
    DeleteFolder,
    Repo,
    validate_file_path,
)
from phi3_lora_hub.local_hub.router import Params, segment
from phi3_lora_hub.local_hub.state import HubState
from phi3_lora_hub.run_file_names import CARD_NAME

_LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"
_PREUPLOAD_MAX_FILES = 256  # what huggingface_hub sends per call at most
_XET_MESSAGE = (
    "This local hub does not speak Xet. Keep its regular-only mode on (the default: every file is sent as a "
    "regular git file), or set HF_HUB_DISABLE_XET=1 on the client to send large files through the LFS API."
)


def _text_of(app: HubState, commit: Commit, path: str) -> str:
    entry = commit.tree.get(path)
    return app.blobs.read(entry.sha256).decode("utf-8", "replace") if entry else ""


# --- preupload -----------------------------------------------------------------------------------------------


def preupload(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/{type}s/{repo}/preupload/{rev}``: upload mode, ``shouldIgnore`` and remote oid per file."""
    repo = open_repo(app, request, params, write=True)
    commit = repo.resolve(segment(params, "rev"))
    body = request.json_object()
    files = body.get("files")
    if not isinstance(files, list) or len(files) > _PREUPLOAD_MAX_FILES:
        raise errors.bad_request(f'"files" must be a list of at most {_PREUPLOAD_MAX_FILES} {{path, sample, size}}.')
    gitignore = body.get("gitIgnore")
    if not isinstance(gitignore, str):
        gitignore = _text_of(app, commit, ".gitignore")
    gitattributes = _text_of(app, commit, ".gitattributes")
    for name, text in ((".gitignore", gitignore), (".gitattributes", gitattributes)):
        _check_patterns(name, text)
    answers = []
    for item in files:
        if not (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("size"), int)):
            raise errors.bad_request('Each entry of "files" needs "path" (string) and "size" (integer).')
        validate_file_path(item["path"])
        encoded = item.get("sample") or ""
        if not isinstance(encoded, str):
            raise errors.bad_request(f'"sample" of {item["path"]!r} must be a base64 string.')
        try:
            sample = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise errors.bad_request(f'"sample" of {item["path"]!r} is not valid base64.') from None
        path = item["path"]
        mode = choose_upload_mode(
            path,
            item["size"],
            sample,
            gitattributes=gitattributes,
            regular_only=app.settings.regular_only,
            lfs_threshold=app.settings.lfs_threshold,
        )
        answer: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": is_ignored(path, gitignore)}
        remote = commit.tree.get(path)
        if remote is not None:
            # The client skips a file whose oid, computed the way this mode implies, equals this one.
            answer["oid"] = remote.sha256 if mode == "lfs" else _regular_oid(app, remote)
        answers.append(answer)
    return json_response({"files": answers, "commitOid": commit.oid})


def _check_patterns(name: str, text: str) -> None:
    try:
        check_patterns(text)
    except ValueError as error:
        raise errors.bad_request(f"The {name} is too large to apply: {error}. Shorten it.") from None


def _regular_oid(app: HubState, entry: FileEntry) -> str:
    return app.blobs.git_oid(entry.sha256) if entry.lfs else entry.git_oid


# --- commit --------------------------------------------------------------------------------------------------


def _commit_lines(app: HubState, request: Request) -> Iterator[dict[str, Any]]:
    """The NDJSON commit payload, line by line, starting with its header line; 400 for a malformed line.

    The payload carries regular files inline, so it is spooled to a file under the root's ``tmp`` (never
    held whole in memory); only one line, at most one file, is in memory at a time.
    """
    app.blobs.staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=app.blobs.staging) as spool:
        for piece in request.body_reader.chunks():
            spool.write(piece)
        spool.seek(0)
        count = 0
        for number, line in enumerate(spool, start=1):
            if not line.strip():
                continue
            item = parse_json(line, f"Line {number} of the commit payload")
            well_formed = (
                isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("value"), dict)
            )
            if not well_formed:
                raise errors.bad_request(
                    f'Line {number} of the commit payload must be {{"key": ..., "value": {{...}}}}.'
                )
            if count == 0 and item["key"] != "header":
                break
            count += 1
            yield item
        if count == 0:
            raise errors.bad_request('The commit payload must start with a {"key": "header", ...} line.')


def _operation(app: HubState, repo: Repo, key: str, value: dict[str, Any]) -> CommitOperation:
    path = value.get("path")
    if not isinstance(path, str):
        raise errors.bad_request(f'Each "{key}" line needs a "path" string.')
    if key == "file":
        encoding = value.get("encoding", "base64")
        content = value.get("content")
        if not isinstance(content, str) or encoding not in ("base64", "utf-8"):
            raise errors.bad_request(f'"file" {path!r} needs "content" and "encoding" "base64" or "utf-8".')
        try:
            data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
        except (binascii.Error, ValueError):
            raise errors.bad_request(f"The content of {path!r} is not valid base64.") from None
        return AddFile(path, FileEntry.regular(app.blobs.put_bytes(data), data))
    if key == "lfsFile":
        oid, size = value.get("oid"), value.get("size")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not SHA256_RE.fullmatch(oid):
            raise errors.bad_request(f'"lfsFile" {path!r} needs "algo": "sha256" and a sha256 hex "oid".')
        if not repo.has_lfs_object(oid):
            raise errors.HubHttpError(
                422,
                "LfsObjectNotFound",
                f"LFS object {oid} for {path!r} was never uploaded to this repository: upload it through the LFS "
                "batch API first (create_commit does this for you).",
            )
        stored = app.blobs.size(oid)
        if size is not None and size != stored:
            raise errors.HubHttpError(422, "LfsSizeMismatch", f"LFS object {oid} has {stored} bytes, not {size}.")
        return AddFile(path, FileEntry.large(oid, stored))
    if key == "deletedFile":
        return DeleteFile(path)
    if key == "deletedFolder":
        return DeleteFolder(path)
    raise errors.bad_request(f'Unknown commit operation "{key}": use file, lfsFile, deletedFile or deletedFolder.')


def commit(app: HubState, request: Request, params: Params) -> Response:
    """``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON): one atomic commit; 412 on a stale ``parentCommit``."""
    repo = open_repo(app, request, params, write=True)
    lines = _commit_lines(app, request)
    header = next(lines)["value"]
    summary, description, parent = header.get("summary"), header.get("description") or "", header.get("parentCommit")
    if not isinstance(summary, str) or not summary.strip():
        raise errors.bad_request('The commit header needs a non-empty "summary" (the commit title).')
    if parent is not None and not (isinstance(parent, str) and 5 <= len(parent) <= 40):
        raise errors.bad_request('"parentCommit" must be a commit id (5 to 40 hex characters).')
    operations = [_operation(app, repo, line["key"], line["value"]) for line in lines]
    for operation in operations:
        if isinstance(operation, AddFile) and operation.path == CARD_NAME:
            _refuse_unsafe_card(app, operation.entry)
        elif isinstance(operation, AddFile) and operation.path in PATTERN_FILES:
            _check_patterns(operation.path, app.blobs.read(operation.entry.sha256).decode("utf-8", "replace"))
    new_commit, pr_number = repo.create_commit(
        segment(params, "rev"),
        operations,
        title=summary.strip(),
        message=str(description),
        author=request.user.name,  # type: ignore[union-attr]  # open_repo(write=True) guarantees a user
        parent_commit=parent,
        create_pr=request.flag("create_pr"),
    )
    url = repo_url(request.base_url, repo.meta)
    return json_response(
        {
            "success": True,
            "commitOid": new_commit.oid,
            "commitUrl": f"{url}/commit/{new_commit.oid}",
            "commitMessage": new_commit.title,
            "hookOutput": "",
            "pullRequestUrl": f"{url}/discussions/{pr_number}" if pr_number else None,
        }
    )


def _refuse_unsafe_card(app: HubState, entry: FileEntry) -> None:
    """400 when a committed README.md has metadata that would blow up when read (see ``cards.load_metadata``)."""
    text = card_text(app, entry)
    refusal = None if text is None else metadata_refusal(text)
    if refusal:
        raise errors.HubHttpError(400, "InvalidMetadata", f"Invalid metadata in README.md: {refusal}.")


def xet_token(app: HubState, request: Request, params: Params) -> Response:
    """``GET .../xet-{read,write}-token/...``: 501 with the way out (this server does not speak Xet)."""
    open_repo(app, request, params)
    raise errors.not_implemented(_XET_MESSAGE)


def discussions(app: HubState, request: Request, params: Params) -> Response:
    """``.../discussions``: 501; pull requests are opened by committing with ``create_pr=1``."""
    open_repo(app, request, params)
    raise errors.not_implemented(
        "The local hub has no discussions API. To open a pull request, commit with create_pr=True "
        "(create_commit, upload_file, or upload_folder with Xet disabled)."
    )


# --- LFS batch -----------------------------------------------------------------------------------------------


def _lfs_base(request: Request, repo: Repo) -> str:
    return f"{request.base_url}/_lfs/{repo.meta.repo_type}s/{repo.meta.repo_id}"


def _object_error(oid: Any, size: Any, code: int, message: str) -> dict[str, Any]:
    return {"oid": str(oid), "size": size if isinstance(size, int) else 0, "error": {"code": code, "message": message}}


def lfs_batch(app: HubState, request: Request, params: Params) -> Response:
    """``POST /{repo}.git/info/lfs/objects/batch``: pre-signed upload/verify (or download) actions."""
    body = request.json_object()
    operation = body.get("operation")
    if operation not in ("upload", "download"):
        raise errors.bad_request('"operation" must be "upload" or "download".')
    repo = open_repo(app, request, params, write=operation == "upload")
    objects = body.get("objects")
    if not isinstance(objects, list):
        raise errors.bad_request('"objects" must be a list of {oid, size}.')
    multipart_ok = "multipart" in (body.get("transfers") or ["basic"])
    base = _lfs_base(request, repo)
    answers = []
    for item in objects:
        oid, size = (item.get("oid"), item.get("size")) if isinstance(item, dict) else (None, None)
        if not (isinstance(oid, str) and SHA256_RE.fullmatch(oid) and isinstance(size, int) and size >= 0):
            answers.append(_object_error(oid, size, 422, "each object needs a sha256 hex oid and a size >= 0"))
        elif operation == "download":
            answers.append(_download_action(app, repo, base, oid, size))
        else:
            answers.append(_upload_action(app, repo, base, oid, size, multipart_ok))
    transfer = "multipart" if any("chunk_size" in _upload_header(answer) for answer in answers) else "basic"
    return json_response({"transfer": transfer, "objects": answers}, headers={"Content-Type": _LFS_CONTENT_TYPE})


def _upload_header(answer: dict[str, Any]) -> dict[str, Any]:
    return answer.get("actions", {}).get("upload", {}).get("header", {})


def _download_action(app: HubState, repo: Repo, base: str, oid: str, size: int) -> dict[str, Any]:
    if not repo.has_lfs_object(oid):
        return _object_error(oid, size, 404, "Object does not exist in this repository")
    query = app.signer.query("download", repo.meta.repo_type, repo.meta.repo_id, oid)
    return {"oid": oid, "size": size, "actions": {"download": {"href": f"{base}/objects/{oid}?{query}"}}}


def _upload_action(app: HubState, repo: Repo, base: str, oid: str, size: int, multipart_ok: bool) -> dict[str, Any]:
    meta = repo.meta
    if repo.has_lfs_object(oid):
        if app.blobs.size(oid) != size:
            return _object_error(oid, size, 422, f"object {oid} is already stored with another size")
        return {"oid": oid, "size": size}  # already here: no actions, the client skips the upload
    chunk = app.settings.lfs_multipart_chunk_size
    actions: dict[str, Any]
    if multipart_ok and chunk is not None and size > chunk:
        upload = app.multipart.start(meta.repo_type, meta.repo_id, oid, size, chunk)
        header: dict[str, str] = {"chunk_size": str(chunk)}
        for number in range(1, upload.parts + 1):
            query = app.signer.query("part", upload.upload_id, str(number))
            header[str(number)] = f"{base}/multipart/{upload.upload_id}/{number}?{query}"
        query = app.signer.query("complete", upload.upload_id)
        actions = {"upload": {"href": f"{base}/multipart/{upload.upload_id}?{query}", "header": header}}
    else:
        query = app.signer.query("upload", meta.repo_type, meta.repo_id, oid, str(size), extra={"size": str(size)})
        actions = {"upload": {"href": f"{base}/objects/{oid}?{query}"}}
    if app.settings.lfs_verify:
        query = app.signer.query("verify", meta.repo_type, meta.repo_id, oid, str(size), extra={"size": str(size)})
        actions["verify"] = {"href": f"{base}/objects/{oid}/verify?{query}"}
    return {"oid": oid, "size": size, "actions": actions}


# --- LFS transfers (pre-signed, no token) --------------------------------------------------------------------


def _signed_repo(app: HubState, request: Request, params: Params, *parts: str) -> Repo:
    repo = app.repos.open(repo_type_of(params), f"{segment(params, 'ns')}/{segment(params, 'name')}")
    app.signer.check(parts, request.param("expires"), request.param("sig"))
    return repo


def _size_param(request: Request) -> int:
    try:
        return int(request.param("size") or "")
    except ValueError:
        raise errors.bad_request("This LFS URL lacks its size; ask the LFS batch endpoint for a new one.") from None


def lfs_put_object(app: HubState, request: Request, params: Params) -> Response:
    """``PUT /_lfs/.../objects/{oid}`` (pre-signed): store the object if its sha256 and size match."""
    oid, size = params["oid"], _size_param(request)
    repo = _signed_repo(app, request, params, "upload", repo_type_of(params), _repo_id(params), oid, str(size))
    request.body_reader.limit = size
    try:
        app.blobs.put_stream(request.body_reader.chunks(), expected_sha256=oid, expected_size=size)
    except BlobMismatchError as error:
        raise errors.bad_request(f"Upload rejected: {error}.") from None
    repo.link_lfs_object(oid)
    return json_response({})


def lfs_get_object(app: HubState, request: Request, params: Params) -> Response:
    """``GET /_lfs/.../objects/{oid}`` (pre-signed): the object's bytes."""
    oid = params["oid"]
    repo = _signed_repo(app, request, params, "download", repo_type_of(params), _repo_id(params), oid)
    if not repo.has_lfs_object(oid):
        raise errors.HubHttpError(404, "LfsObjectNotFound", f"LFS object {oid} is not stored in this repository.")
    size = app.blobs.size(oid)
    return Response(200, {"Content-Type": "application/octet-stream"}, file=app.blobs.path(oid), length=size)


def lfs_verify(app: HubState, request: Request, params: Params) -> Response:
    """``POST /_lfs/.../objects/{oid}/verify`` (pre-signed): 200 if the object is stored with this size."""
    oid, size = params["oid"], _size_param(request)
    repo = _signed_repo(app, request, params, "verify", repo_type_of(params), _repo_id(params), oid, str(size))
    body = request.json_object()
    if body.get("oid") != oid or body.get("size") != size:
        raise errors.bad_request(f"Verify body must be {{'oid': '{oid}', 'size': {size}}}.")
    if not repo.has_lfs_object(oid) or app.blobs.size(oid) != size:
        raise errors.HubHttpError(404, "LfsObjectNotFound", f"LFS object {oid} ({size} bytes) was not uploaded.")
    return json_response({})


def lfs_put_part(app: HubState, request: Request, params: Params) -> Response:
    """``PUT /_lfs/.../multipart/{upload}/{n}`` (pre-signed): stage part ``n``; answers its ``ETag``."""
    upload_id, number = params["upload"], int(params["part"])
    app.signer.check(("part", upload_id, str(number)), request.param("expires"), request.param("sig"))
    upload = app.multipart.get(upload_id)
    path = app.multipart.part_path(upload, number)
    expected = min(upload.chunk_size, upload.size - (number - 1) * upload.chunk_size)
    request.body_reader.limit = expected
    with atomic_writer(path) as handle:  # streamed: a part never sits in memory whole
        size = sum(handle.write(piece) for piece in request.body_reader.chunks())
        if size != expected:
            raise errors.bad_request(f"Part {number} must be {expected} bytes, got {size}.")
    return Response(200, {"ETag": f'"{part_etag(path)}"'})


def lfs_complete_multipart(app: HubState, request: Request, params: Params) -> Response:
    """``POST /_lfs/.../multipart/{upload}`` (pre-signed): assemble the parts, check the ETags and sha256."""
    upload_id = params["upload"]
    app.signer.check(("complete", upload_id), request.param("expires"), request.param("sig"))
    upload = app.multipart.get(upload_id)
    repo = app.repos.open(upload.repo_type, upload.repo_id)
    body = request.json_object()
    parts = body.get("parts")
    if body.get("oid") != upload.oid or not isinstance(parts, list) or len(parts) != upload.parts:
        raise errors.bad_request(f"Completion needs oid {upload.oid} and the {upload.parts} parts with their ETags.")
    paths: list[Path] = []
    for number, part in enumerate(parts, start=1):
        path = app.multipart.part_path(upload, number)
        etag = str(part.get("etag", "")).strip('"') if isinstance(part, dict) else ""
        if part.get("partNumber") != number or not path.is_file() or etag != part_etag(path):
            raise errors.bad_request(f"Part {number} is missing or its ETag does not match; upload it again.")
        paths.append(path)
    try:
        app.blobs.put_stream(_read_files(paths), expected_sha256=upload.oid, expected_size=upload.size)
    except BlobMismatchError as error:
        raise errors.bad_request(f"Upload rejected: {error}.") from None
    finally:
        app.multipart.finish(upload)
    repo.link_lfs_object(upload.oid)
    return json_response({})


def _repo_id(params: Params) -> str:
    return f"{segment(params, 'ns')}/{segment(params, 'name')}"


def _read_files(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as handle:
            while piece := handle.read(1 << 20):
                yield piece
