"""Immutable repository objects (file entries, commits) and the Hub's JSON shapes for files and folders.

A commit stores its whole tree as a flat ``path -> FileEntry`` mapping; folders are implied by the paths.
That keeps every commit self-contained (reading a revision is one file read) at a size that is fine for
adapter and checkpoint repositories.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from phi3_lora_hub.local_hub.blobs import git_blob_sha1


def utc_now_iso() -> str:
    """The current time in the Hub's format, ``2024-05-01T12:00:00.123Z`` (``parse_datetime`` reads only this)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git would store instead of the content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit: its content (by sha256), size, and whether the Hub would keep it in LFS."""

    sha256: str
    size: int
    lfs: bool
    git_oid: str
    """The oid the Hub reports: git blob sha1 of the content, or of the LFS pointer for LFS files."""

    @classmethod
    def regular(cls, sha256: str, content: bytes) -> FileEntry:
        return cls(sha256, len(content), False, git_blob_sha1(content))

    @classmethod
    def large(cls, sha256: str, size: int) -> FileEntry:
        return cls(sha256, size, True, git_blob_sha1(lfs_pointer(sha256, size)))

    @property
    def etag(self) -> str:
        """What the Hub sends as the download ETag: sha256 for LFS files, the git oid otherwise."""
        return self.sha256 if self.lfs else self.git_oid

    def lfs_info(self, *, sibling: bool = False) -> dict[str, Any] | None:
        """The ``lfs`` field of a tree entry (``oid``) or of a repo-info sibling (``sha256``); None if regular."""
        if not self.lfs:
            return None
        key = "sha256" if sibling else "oid"
        return {key: self.sha256, "size": self.size, "pointerSize": len(lfs_pointer(self.sha256, self.size))}

    def to_json(self) -> list[Any]:
        return [self.sha256, self.size, self.lfs, self.git_oid]

    @classmethod
    def from_json(cls, value: list[Any]) -> FileEntry:
        sha256, size, lfs, git_oid = value
        return cls(str(sha256), int(size), bool(lfs), str(git_oid))


@dataclass(frozen=True)
class Commit:
    """A commit: its 40-hex id, parents (first parent first), message, author, date and full tree."""

    oid: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    date: str
    tree: Mapping[str, FileEntry] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "oid": self.oid,
            "parents": list(self.parents),
            "title": self.title,
            "message": self.message,
            "author": self.author,
            "date": self.date,
            "tree": {path: entry.to_json() for path, entry in sorted(self.tree.items())},
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Commit:
        return cls(
            oid=value["oid"],
            parents=tuple(value["parents"]),
            title=value["title"],
            message=value["message"],
            author=value["author"],
            date=value["date"],
            tree={path: FileEntry.from_json(entry) for path, entry in value["tree"].items()},
        )


# --- folders -------------------------------------------------------------------------------------------------


def is_directory(tree: Mapping[str, FileEntry], path: str) -> bool:
    """Whether ``path`` is a folder of ``tree`` (the root ``""`` always is)."""
    prefix = f"{path}/" if path else ""
    return path == "" or any(name.startswith(prefix) for name in tree)


def directories(tree: Mapping[str, FileEntry]) -> set[str]:
    """Every folder of ``tree`` (not the root), computed once for many ``is_directory``-like lookups."""
    return {name.rsplit("/", depth)[0] for name in tree for depth in range(1, name.count("/") + 1)}


def directory_oid(tree: Mapping[str, FileEntry], path: str) -> str:
    """A stable 40-hex id for the content of a folder: it changes exactly when something below it changes."""
    prefix = f"{path}/" if path else ""
    hasher = hashlib.sha1(usedforsecurity=False)
    for name in sorted(name for name in tree if name.startswith(prefix)):
        hasher.update(f"{name[len(prefix) :]}\0{tree[name].git_oid}\n".encode())
    return hasher.hexdigest()


def list_directory(tree: Mapping[str, FileEntry], path: str, *, recursive: bool) -> list[tuple[str, str]]:
    """The ``(kind, path)`` items under folder ``path``, kind "directory" or "file", folders first, sorted.

    Non-recursive: the folder's direct children. Recursive: every file and folder below it, as the Hub lists.
    """
    prefix = f"{path}/" if path else ""
    directories: set[str] = set()
    files: list[str] = []
    for name in tree:
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].split("/")
        if recursive:
            directories.update(prefix + "/".join(parts[:depth]) for depth in range(1, len(parts)))
            files.append(name)
        elif len(parts) == 1:
            files.append(name)
        else:
            directories.add(prefix + parts[0])
    return [("directory", name) for name in sorted(directories)] + [("file", name) for name in sorted(files)]


def tree_item_json(
    tree: Mapping[str, FileEntry], kind: str, path: str, last_commit: Commit | None = None
) -> dict[str, Any]:
    """One entry of a ``/tree`` or ``/paths-info`` answer, in the Hub's shape (never with ``xetHash``)."""
    item: dict[str, Any]
    if kind == "directory":
        item = {"type": "directory", "path": path, "oid": directory_oid(tree, path)}
    else:
        entry = tree[path]
        item = {"type": "file", "path": path, "oid": entry.git_oid, "size": entry.size}
        if entry.lfs:
            item["lfs"] = entry.lfs_info()
    if last_commit is not None:
        item["lastCommit"] = {"id": last_commit.oid, "title": last_commit.title, "date": last_commit.date}
    return item
