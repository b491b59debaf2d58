"""Minimal web pages at the addresses the Hub gives repositories, so the links people print and write work.

``/{repo}`` (the repository URL ``create_repo`` returns), ``/{repo}/tree/{rev}[/{path}]`` (files and folders),
``/{repo}/blob/{rev}/{path}`` (one file) and ``/{repo}/commit/{oid}`` (the ``commitUrl`` of a commit), for
models and, under ``/datasets/`` and ``/spaces/``, the other repo types. Plain HTML: everything from the repo is
escaped, links are site-relative (they survive a change of port), and no script runs (``Content-Security-Policy``).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.api_repos import card_text, open_repo
from phi3_lora_hub.local_hub.messages import Request, Response
from phi3_lora_hub.local_hub.objects import Commit, is_directory, list_directory
from phi3_lora_hub.local_hub.repos import Repo
from phi3_lora_hub.local_hub.router import Params, segment
from phi3_lora_hub.local_hub.state import HubState
from phi3_lora_hub.run_file_names import CARD_NAME

_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PREVIEW_BYTES = 200_000
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = "body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f6f6f6;padding:1em;overflow:auto}"


def _href(repo: Repo, action: str = "", revision: str = "", path: str = "") -> str:
    """A site-relative link into the repository, ``/[datasets/]ns/name[/action/revision[/path]]``.

    The revision is percent-encoded whole (``ckpt/step-1`` -> ``ckpt%2Fstep-1``), as the Hub's links do.
    """
    link = f"/{_PREFIXES[repo.meta.repo_type]}{repo.meta.repo_id}"
    if action:
        link += f"/{action}/{quote(revision, safe='')}"
    return f"{link}/{quote(path)}" if path else link


def _page(repo: Repo, title: str, body: str) -> Response:
    heading = f'<h1><a href="{_href(repo)}">{escape(repo.meta.repo_id)}</a></h1>'
    document = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{heading}{body}</body></html>"
    )
    return Response(200, dict(_HEADERS), document.encode())


def _listing(repo: Repo, commit: Commit, revision: str, path: str) -> str:
    rows = []
    for kind, item in list_directory(commit.tree, path, recursive=False):
        name = item.rsplit("/", 1)[-1]
        if kind == "directory":
            rows.append(f'<li><a href="{_href(repo, "tree", revision, item)}">{escape(name)}/</a></li>')
        else:
            size = commit.tree[item].size
            rows.append(f'<li><a href="{_href(repo, "blob", revision, item)}">{escape(name)}</a> ({size} bytes)</li>')
    return f"<ul>{''.join(rows)}</ul>"


def _branches(repo: Repo) -> str:
    links = [f'<a href="{_href(repo, "tree", name)}">{escape(name)}</a>' for name in sorted(repo.refs().heads)]
    return f"<p>Branches: {', '.join(links)}</p>"


def repo_page(app: HubState, request: Request, params: Params) -> Response:
    """``GET /{repo}``: the files of ``main``, the branches and the model card's text."""
    repo = open_repo(app, request, params)
    commit = repo.resolve("main")
    card = card_text(app, commit.tree.get(CARD_NAME))
    readme = f"<h2>{CARD_NAME}</h2><pre>{escape(card)}</pre>" if card is not None else ""
    body = f"{_branches(repo)}<p>Commit {commit.oid}</p>{_listing(repo, commit, 'main', '')}{readme}"
    return _page(repo, repo.meta.repo_id, body)


def tree_page(app: HubState, request: Request, params: Params) -> Response:
    """``GET /{repo}/tree/{rev}[/{path}]``: one folder at a revision; 404 ``EntryNotFound`` if it is none."""
    repo = open_repo(app, request, params)
    revision = segment(params, "rev")
    commit = repo.resolve(revision)
    path = segment(params, "path").strip("/")
    if path and not is_directory(commit.tree, path):
        raise errors.entry_not_found(path, commit.oid, what="folder")
    title = f"{repo.meta.repo_id} at {revision}" + (f": {path}/" if path else "")
    listing = _listing(repo, commit, revision, path)
    return _page(repo, title, f"{_branches(repo)}<h2>{escape(title)}</h2><p>Commit {commit.oid}</p>{listing}")


def blob_page(app: HubState, request: Request, params: Params) -> Response:
    """``GET /{repo}/blob/{rev}/{path}``: one file, its text shown when it is small and not binary."""
    repo = open_repo(app, request, params)
    revision, path = segment(params, "rev"), segment(params, "path")
    commit = repo.resolve(revision)
    entry = commit.tree.get(path)
    if entry is None:
        raise errors.entry_not_found(path, commit.oid)
    content = app.blobs.read(entry.sha256) if entry.size <= _PREVIEW_BYTES else b""
    preview = f"<pre>{escape(content.decode('utf-8', 'replace'))}</pre>" if content and b"\0" not in content else ""
    download = f'<a href="{_href(repo, "resolve", revision, path)}">download</a>'
    title = f"{path} at {revision}"
    return _page(repo, title, f"<h2>{escape(title)}</h2><p>{entry.size} bytes, {download}</p>{preview}")


def commit_page(app: HubState, request: Request, params: Params) -> Response:
    """``GET /{repo}/commit/{oid}``: a commit's title, message, author, date and files."""
    repo = open_repo(app, request, params)
    commit = repo.resolve(segment(params, "rev"))
    details = f"<p>{escape(commit.author)}, {escape(commit.date)}</p><pre>{escape(commit.message)}</pre>"
    body = f"<h2>{escape(commit.title)}</h2><p>Commit {commit.oid}</p>{details}{_listing(repo, commit, commit.oid, '')}"
    return _page(repo, commit.title, body)
