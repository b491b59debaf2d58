"""Repositories on disk: metadata, commits with parents, branches/tags/PR refs, and atomic commits.

Layout under the hub root::

    repos/<type>s/<namespace>/<name>/repo.json          metadata (visibility, sdk, creation date)
    repos/<type>s/<namespace>/<name>/refs.json          {"heads": {...}, "tags": {...}, "prs": {...}}
    repos/<type>s/<namespace>/<name>/commits/ab/<oid>.json
    repos/<type>s/<namespace>/<name>/lfs/<sha256>       marker: this LFS object was uploaded to this repo

A commit is durable before any ref points to it (blobs, then the commit file, then ``refs.json``, each written
atomically), so a crash at any moment leaves every branch on a complete commit. Writes to one repository are
serialised by a per-repository lock; the server holds a lock file so that only one process serves a root.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from phi3_lora_hub.atomic_write import atomic_write_bytes
from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.blobs import BlobStore
from phi3_lora_hub.local_hub.errors import HubHttpError
from phi3_lora_hub.local_hub.fsutil import atomic_write_json, read_json
from phi3_lora_hub.local_hub.objects import Commit, FileEntry, utc_now_iso
from phi3_lora_hub.local_hub.patterns import DEFAULT_GITATTRIBUTES

REPO_TYPES = ("model", "dataset", "space")
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
DEFAULT_BRANCH = "main"
COMMIT_OID_RE = re.compile(r"[0-9a-f]{40}")
_SHORT_OID_RE = re.compile(r"[0-9a-f]{7,39}")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}")
_PR_REF_RE = re.compile(r"refs/pr/([1-9][0-9]*)")


def validate_repo_name(namespace: str, name: str) -> None:
    """Raise a 400 unless ``namespace/name`` is a valid Hub repo id (same rules as ``validate_repo_id``)."""
    for label, value in (("namespace", namespace), ("name", name)):
        if (
            not _NAME_RE.fullmatch(value)
            or value.endswith(("-", "."))
            or "--" in value
            or ".." in value
            or (label == "name" and value.endswith(".git"))
        ):
            raise errors.bad_request(
                f"Invalid repo {label} {value!r}: use 1-96 letters, digits, '-', '_' or '.', not starting or "
                "ending with '-' or '.', without '--' or '..'."
            )
    if namespace.startswith("_"):
        raise errors.bad_request(f"Invalid namespace {namespace!r}: names starting with '_' are reserved.")


def validate_branch_name(name: str) -> None:
    """Raise a 400 unless ``name`` can be a branch or tag name (git's rules, and not a commit id)."""
    bad = (
        not name
        or name == "HEAD"
        or name.startswith(("/", "-", "refs/"))
        or name.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") for part in name.split("/"))
        or "//" in name
        or ".." in name
        or "@{" in name
        or any(char in name for char in " ~^:?*[\\")
        or any(ord(char) < 32 or ord(char) == 127 for char in name)
        or COMMIT_OID_RE.fullmatch(name) is not None
    )
    if bad:
        raise errors.bad_request(
            f"Invalid ref name {name!r}: use letters, digits, '-', '_', '.' and '/' (not a 40-hex commit id, "
            "no '..', no spaces or ~^:?*[\\ characters, not starting with 'refs/')."
        )


def validate_file_path(path: str) -> str:
    """Return ``path`` if it is a valid path of a file in a repository, else raise a 400."""
    parts = path.split("/")
    if (
        not path
        or len(path) > 1000
        or "\\" in path
        or "\0" in path
        or any(part in ("", ".", "..") for part in parts)
        or ".git" in parts
    ):
        raise errors.bad_request(
            f"Invalid path in repo {path!r}: use a relative path like 'dir/file.txt', without '.', '..', "
            "empty segments or a '.git' folder."
        )
    return path


@dataclass(frozen=True)
class RepoMeta:
    """What a repository is, apart from its content."""

    repo_type: str
    repo_id: str
    private: bool = False
    created_at: str = field(default_factory=utc_now_iso)
    sdk: str | None = None
    gated: bool | str = False

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass
class Refs:
    """Branch heads, tags and pull-request refs of one repository (names to commit oids)."""

    heads: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"heads": self.heads, "tags": self.tags, "prs": {str(number): oid for number, oid in self.prs.items()}}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Refs:
        prs = {int(number): oid for number, oid in value.get("prs", {}).items()}
        return cls(dict(value.get("heads", {})), dict(value.get("tags", {})), prs)


@dataclass(frozen=True)
class AddFile:
    """Commit operation: put a stored blob at ``path`` (``lfs`` says how the Hub would store it)."""

    path: str
    entry: FileEntry


@dataclass(frozen=True)
class DeleteFile:
    """Commit operation: remove the file at ``path`` (404 EntryNotFound when there is none)."""

    path: str


@dataclass(frozen=True)
class DeleteFolder:
    """Commit operation: remove every file below ``path`` (404 EntryNotFound when the folder does not exist)."""

    path: str


CommitOperation = AddFile | DeleteFile | DeleteFolder


class Repo:
    """One repository on disk. Obtain it from ``RepoStore.open``; every method is thread-safe."""

    def __init__(self, store: RepoStore, directory: Path, meta: RepoMeta, lock: threading.RLock) -> None:
        self._store = store
        self.directory = directory
        self.meta = meta
        self._lock = lock

    # --- reading ---------------------------------------------------------------------------------------------

    def refs(self) -> Refs:
        return Refs.from_json(read_json(self.directory / "refs.json"))

    def commit(self, oid: str) -> Commit:
        """The commit with this full oid (raises ``KeyError`` when this repository has none)."""
        return self._store.load_commit(self.directory, oid)

    def has_commit(self, oid: str) -> bool:
        return self._commit_path(oid).is_file()

    def resolve(self, revision: str) -> Commit:
        """The commit a revision names: branch, tag, ``refs/heads|tags|pr/...``, full or abbreviated commit id.

        Raises 404 RevisionNotFound when the revision names nothing in this repository.
        """
        refs = self.refs()
        oid = self._lookup(refs, revision)
        if oid is None:
            raise errors.revision_not_found(revision)
        return self.commit(oid)

    def _lookup(self, refs: Refs, revision: str) -> str | None:
        if revision.startswith("refs/heads/"):
            return refs.heads.get(revision.removeprefix("refs/heads/"))
        if revision.startswith("refs/tags/"):
            return refs.tags.get(revision.removeprefix("refs/tags/"))
        if match := _PR_REF_RE.fullmatch(revision):
            return refs.prs.get(int(match[1]))
        if revision in refs.heads:
            return refs.heads[revision]
        if revision in refs.tags:
            return refs.tags[revision]
        if COMMIT_OID_RE.fullmatch(revision):
            return revision if self.has_commit(revision) else None
        if _SHORT_OID_RE.fullmatch(revision):
            shard = self.directory / "commits" / revision[:2]
            found = sorted(path.stem for path in shard.glob(f"{revision}*.json")) if shard.is_dir() else []
            return found[0] if len(found) == 1 else None
        return None

    def history(self, start: Commit) -> Iterator[Commit]:
        """``start`` and its first-parent ancestors, newest first."""
        commit: Commit | None = start
        while commit is not None:
            yield commit
            commit = self.commit(commit.parents[0]) if commit.parents else None

    def has_lfs_object(self, sha256: str) -> bool:
        """Whether this LFS object was uploaded to this repository (and is still in the blob store)."""
        return (self.directory / "lfs" / sha256).is_file() and self._store.blobs.exists(sha256)

    # --- writing ---------------------------------------------------------------------------------------------

    def link_lfs_object(self, sha256: str) -> None:
        """Record that this repository received this LFS object, so its commits may reference it."""
        marker = self.directory / "lfs" / sha256
        if not marker.is_file():
            atomic_write_bytes(marker, b"")

    def create_commit(
        self,
        revision: str,
        operations: Sequence[CommitOperation],
        *,
        title: str,
        message: str,
        author: str,
        parent_commit: str | None = None,
        create_pr: bool = False,
    ) -> tuple[Commit, int | None]:
        """Apply ``operations`` on top of branch ``revision`` as one new commit; return it and the PR number.

        ``revision`` must be a branch (or a ``refs/pr/N`` ref). With ``parent_commit`` (full or abbreviated
        oid) the commit is refused with 412 unless the branch still points at it. With ``create_pr`` the
        commit goes to a new ``refs/pr/N`` ref based on the branch (or on ``parent_commit``) and the branch
        is left as it is. Either the whole commit lands or nothing changes.
        """
        with self._lock:
            self._ensure_exists()
            refs = self.refs()
            branch = revision.removeprefix("refs/heads/")
            pr_match = _PR_REF_RE.fullmatch(revision)
            head_oid = refs.prs.get(int(pr_match[1])) if pr_match else refs.heads.get(branch)
            if head_oid is None:
                if self._lookup(refs, revision) is not None:
                    raise errors.bad_request(
                        f"Cannot commit to {revision!r}: it is a tag or a commit, not a branch. "
                        "Commit to a branch (create one with create_branch)."
                    )
                raise errors.revision_not_found(revision)
            base_oid = head_oid
            if parent_commit is not None:
                if create_pr:
                    base_oid = self._lookup(refs, parent_commit) or ""
                    if not base_oid:
                        raise errors.revision_not_found(parent_commit)
                elif not head_oid.startswith(parent_commit.lower()):
                    raise HubHttpError(
                        412,
                        "PreconditionFailed",
                        f"A commit has happened since. Please refresh and try again. (parent_commit is "
                        f"{parent_commit} but {revision!r} now points at {head_oid}; fetch the new head with "
                        "repo_info() and retry.)",
                    )
            base = self.commit(base_oid)
            tree = _apply(dict(base.tree), operations, base.oid)
            commit = self._store.write_commit(
                self.directory, parents=(base.oid,), tree=tree, title=title, message=message, author=author
            )
            pr_number = None
            if create_pr:
                pr_number = max(refs.prs, default=0) + 1
                refs.prs[pr_number] = commit.oid
            elif pr_match:
                refs.prs[int(pr_match[1])] = commit.oid
            else:
                refs.heads[branch] = commit.oid
            self._write_refs(refs)
            return commit, pr_number

    def create_branch(self, name: str, start: str | None) -> Commit:
        """Create branch ``name`` at revision ``start`` (default: the main branch); 409 if it exists."""
        validate_branch_name(name)
        with self._lock:
            self._ensure_exists()
            refs = self.refs()
            if name in refs.heads:
                raise errors.conflict(f"Branch {name!r} already exists (pass exist_ok=True to accept that).")
            if name in refs.tags:
                raise errors.conflict(f"A tag named {name!r} exists; choose another branch name.")
            target = self.resolve(start or DEFAULT_BRANCH)
            refs.heads[name] = target.oid
            self._write_refs(refs)
            return target

    def delete_branch(self, name: str) -> None:
        with self._lock:
            self._ensure_exists()
            refs = self.refs()
            if name == DEFAULT_BRANCH:
                raise errors.forbidden(f"The default branch {DEFAULT_BRANCH!r} cannot be deleted.")
            if refs.heads.pop(name, None) is None:
                raise errors.revision_not_found(name)
            self._write_refs(refs)

    def create_tag(self, name: str, revision: str) -> Commit:
        """Tag the commit ``revision`` names; 409 if the tag exists."""
        validate_branch_name(name)
        with self._lock:
            self._ensure_exists()
            refs = self.refs()
            if name in refs.tags:
                raise errors.conflict(f"Tag {name!r} already exists (pass exist_ok=True to accept that).")
            if name in refs.heads:
                raise errors.conflict(f"A branch named {name!r} exists; choose another tag name.")
            target = self.resolve(revision)
            refs.tags[name] = target.oid
            self._write_refs(refs)
            return target

    def delete_tag(self, name: str) -> None:
        with self._lock:
            self._ensure_exists()
            refs = self.refs()
            if refs.tags.pop(name, None) is None:
                raise errors.revision_not_found(name)
            self._write_refs(refs)

    def update_meta(self, **changes: Any) -> RepoMeta:
        """Change metadata fields (e.g. ``private``) and persist them."""
        with self._lock:
            self._ensure_exists()
            self.meta = replace(self.meta, **changes)
            atomic_write_json(self.directory / "repo.json", asdict(self.meta))
            return self.meta

    # --- internals -------------------------------------------------------------------------------------------

    def _commit_path(self, oid: str) -> Path:
        return self.directory / "commits" / oid[:2] / f"{oid}.json"

    def _write_refs(self, refs: Refs) -> None:
        atomic_write_json(self.directory / "refs.json", refs.to_json())

    def _ensure_exists(self) -> None:
        # A handle can outlive a concurrent delete_repo; refuse to write into a deleted repository.
        if not (self.directory / "repo.json").is_file():
            raise errors.repo_not_found(self.meta.repo_type, self.meta.repo_id)


def _apply(tree: dict[str, FileEntry], operations: Sequence[CommitOperation], base_oid: str) -> dict[str, FileEntry]:
    for operation in operations:
        if isinstance(operation, AddFile):
            tree[validate_file_path(operation.path)] = operation.entry
        elif isinstance(operation, DeleteFile):
            if tree.pop(operation.path, None) is None:
                raise errors.entry_not_found(operation.path, base_oid)
        else:
            folder = operation.path.strip("/")
            if not folder:
                raise errors.bad_request("Cannot delete the root folder: delete the repository or its folders instead.")
            doomed = [path for path in tree if path.startswith(f"{folder}/")]
            if not doomed:
                raise errors.entry_not_found(operation.path, base_oid, what="folder")
            for path in doomed:
                del tree[path]
    for path in tree:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if (parent := "/".join(parts[:depth])) in tree:
                raise errors.bad_request(
                    f"{parent!r} is a file, so {path!r} cannot be created below it; delete or rename one of them."
                )
    return tree


class RepoStore:
    """All repositories under one hub root, with their per-repository locks and a commit cache.

    Repository ids are unique regardless of letter case, as on the Hub: ``User/Model`` names the repository
    ``user/model`` when that exists (answers carry the stored spelling), and creating it then is a conflict.
    """

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self.root = root / "repos"
        self.trash = root / "tmp" / "deleted"
        self.blobs = blobs
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._naming = threading.Lock()
        """Serialises creations and moves, which must see every id (in any case) that exists."""
        self._cache: OrderedDict[tuple[Path, str], Commit] = OrderedDict()
        self._cache_guard = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)

    def directory(self, repo_type: str, repo_id: str) -> Path:
        """Where the repository lives; 404 RepoNotFound for an id that cannot name a repository.

        Validating here keeps every path built from a URL inside the root (no ``..`` segment gets through).
        """
        namespace, _, name = repo_id.partition("/")
        try:
            validate_repo_name(namespace, name)
        except HubHttpError:
            raise errors.repo_not_found(repo_type, repo_id) from None
        if repo_type not in REPO_TYPES:
            raise errors.repo_not_found(repo_type, repo_id)
        return self.root / f"{repo_type}s" / namespace / name

    def lock(self, repo_type: str, repo_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault((repo_type, repo_id.lower()), threading.RLock())

    def find(self, repo_type: str, repo_id: str) -> str | None:
        """The stored spelling of the repository ``repo_id`` names in any letter case; ``None`` if there is none."""
        directory = self.directory(repo_type, repo_id)
        if (directory / "repo.json").is_file():
            return repo_id
        wanted = repo_id.lower()
        for candidate in directory.parent.parent.glob("*/*/repo.json"):
            found = f"{candidate.parent.parent.name}/{candidate.parent.name}"
            if found.lower() == wanted:
                return found
        return None

    def open(self, repo_type: str, repo_id: str) -> Repo:
        """The repository (found in any letter case), or 404 RepoNotFound."""
        stored = self.find(repo_type, repo_id)
        if stored is None:
            raise errors.repo_not_found(repo_type, repo_id)
        directory = self.directory(repo_type, stored)
        try:
            meta = _read_meta(directory)
        except (FileNotFoundError, NotADirectoryError):  # deleted or moved meanwhile
            raise errors.repo_not_found(repo_type, repo_id) from None
        return Repo(self, directory, meta, self.lock(repo_type, stored))

    def exists(self, repo_type: str, repo_id: str) -> bool:
        try:
            return self.find(repo_type, repo_id) is not None
        except HubHttpError:
            return False

    def create(self, meta: RepoMeta, *, author: str) -> Repo:
        """Create a repository whose ``main`` has one "initial commit" holding ``.gitattributes``; 409 if taken."""
        namespace, name = meta.repo_id.split("/")
        validate_repo_name(namespace, name)
        directory = self.directory(meta.repo_type, meta.repo_id)
        lock = self.lock(meta.repo_type, meta.repo_id)
        with self._naming, lock:
            existing = self.find(meta.repo_type, meta.repo_id)
            if existing is not None:
                raise errors.conflict(f"You already created this {meta.repo_type} repo: {existing}.")
            content = DEFAULT_GITATTRIBUTES.encode()
            entry = FileEntry.regular(self.blobs.put_bytes(content), content)
            initial = self.write_commit(
                directory, parents=(), tree={".gitattributes": entry}, title="initial commit", message="", author=author
            )
            atomic_write_json(directory / "refs.json", Refs(heads={DEFAULT_BRANCH: initial.oid}).to_json())
            # repo.json last: until it exists the repository does not exist, so a crash here leaves nothing visible.
            atomic_write_json(directory / "repo.json", asdict(meta))
            return Repo(self, directory, meta, lock)

    def delete(self, repo_type: str, repo_id: str) -> None:
        """Delete a repository (404 RepoNotFound if there is none). Its blobs stay, shared by content."""
        repo = self.open(repo_type, repo_id)
        with repo._lock:
            repo._ensure_exists()
            self.trash.mkdir(parents=True, exist_ok=True)
            doomed = self.trash / uuid.uuid4().hex
            repo.directory.rename(doomed)  # one atomic step; the slow removal happens out of sight
        shutil.rmtree(doomed, ignore_errors=True)

    def move(self, repo_type: str, repo_id: str, new_id: str) -> RepoMeta:
        """Rename a repository (history, branches and files move with it); 404 if missing, 409 if taken.

        A change of letter case only (``me/model`` -> ``me/Model``) is a rename too.
        """
        namespace, name = new_id.split("/")
        validate_repo_name(namespace, name)
        with self._naming:
            repo = self.open(repo_type, repo_id)
            existing = self.find(repo_type, new_id)
            if existing is not None and existing.lower() != repo.meta.repo_id.lower():
                raise errors.conflict(f"A {repo_type} repo named {existing} already exists; choose another name.")
            target = self.directory(repo_type, new_id)
            with repo._lock:
                repo._ensure_exists()
                meta = replace(repo.meta, repo_id=new_id)
                atomic_write_json(repo.directory / "repo.json", asdict(meta))
                target.parent.mkdir(parents=True, exist_ok=True)
                if existing is None:
                    repo.directory.rename(target)
                else:  # a change of case only: through a temporary name, for case-insensitive filesystems
                    passage = repo.directory.with_name(f".moving-{uuid.uuid4().hex}")
                    repo.directory.rename(passage)
                    passage.rename(target)
            return meta

    def list(self, repo_type: str) -> list[RepoMeta]:
        """Every repository of this type, sorted by id."""
        paths = sorted((self.root / f"{repo_type}s").glob("*/*/repo.json"))
        return [_read_meta(path.parent) for path in paths if not path.parent.name.startswith(".")]

    def write_commit(
        self,
        directory: Path,
        *,
        parents: tuple[str, ...],
        tree: Mapping[str, FileEntry],
        title: str,
        message: str,
        author: str,
    ) -> Commit:
        """Persist a new commit (its blobs must already be stored) and return it. Refs are not touched."""
        date = utc_now_iso()
        # A random salt makes ids unique even for identical trees committed in the same millisecond.
        material = json.dumps(
            [parents, sorted((p, e.to_json()) for p, e in tree.items()), title, message, author, date, uuid.uuid4().hex]
        )
        oid = hashlib.sha1(material.encode(), usedforsecurity=False).hexdigest()
        commit = Commit(oid, parents, title, message, author, date, dict(tree))
        atomic_write_json(directory / "commits" / oid[:2] / f"{oid}.json", commit.to_json())
        self._remember(directory, commit)
        return commit

    def load_commit(self, directory: Path, oid: str) -> Commit:
        with self._cache_guard:
            cached = self._cache.get((directory, oid))
            if cached is not None:
                self._cache.move_to_end((directory, oid))
                return cached
        try:
            commit = Commit.from_json(read_json(directory / "commits" / oid[:2] / f"{oid}.json"))
        except FileNotFoundError:
            raise KeyError(oid) from None
        self._remember(directory, commit)
        return commit

    def _remember(self, directory: Path, commit: Commit) -> None:
        with self._cache_guard:
            self._cache[(directory, commit.oid)] = commit
            while len(self._cache) > 2048:
                self._cache.popitem(last=False)


def _read_meta(directory: Path) -> RepoMeta:
    """A repository's metadata; its id is where it is stored (a move renames the directory last)."""
    stored = read_json(directory / "repo.json")
    return RepoMeta(**{**stored, "repo_id": f"{directory.parent.name}/{directory.name}"})
