"""Git path patterns: which files ``.gitattributes`` sends to LFS, which files ``.gitignore`` ignores.

Both files use gitignore-style globs: ``*`` and ``?`` stay within one path segment, ``**`` spans segments, a
pattern without a slash matches a name at any depth, a pattern with a slash is anchored at the repo root.
In ``.gitignore`` a trailing ``/`` restricts a pattern to directories (ignoring everything below them) and
``!`` re-includes; the last matching line wins. This is the subset the Hub's preupload decisions need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

UploadMode = Literal["lfs", "regular"]

_LFS_PATTERNS = """
    *.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy
    *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/*
    *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*
""".split()  # noqa: SIM905 - one string keeps the list compact
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in _LFS_PATTERNS)
"""The ``.gitattributes`` a new repository starts with: common binary and weight formats go to LFS."""

DEFAULT_LFS_THRESHOLD = 10_000_000
"""Files larger than this (bytes) go to LFS whatever their name, as on the Hub."""


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1 : end]
            out.append(f"[^{body[1:]}]" if body.startswith("!") else f"[{body}]")
            i = end + 1
        elif glob[i] == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class PathPattern:
    """One gitignore-style glob, compiled."""

    regex: re.Pattern[str]
    directory_only: bool = False

    @classmethod
    def compile(cls, glob: str) -> PathPattern:
        directory_only = glob.endswith("/")
        glob = glob.rstrip("/")
        anchored = "/" in glob
        prefix = "" if anchored else "(?:.*/)?"
        return cls(re.compile(prefix + _glob_to_regex(glob.lstrip("/"))), directory_only)

    def matches_file(self, path: str) -> bool:
        """Whether the pattern names this file itself."""
        return not self.directory_only and self.regex.fullmatch(path) is not None

    def matches_file_or_parent(self, path: str) -> bool:
        """Whether the pattern names this file or one of the directories that contain it."""
        parts = path.split("/")
        parents = ("/".join(parts[:depth]) for depth in range(1, len(parts)))
        return self.matches_file(path) or any(self.regex.fullmatch(parent) for parent in parents)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def is_ignored(path: str, gitignore: str) -> bool:
    """Whether ``.gitignore`` content ``gitignore`` ignores the file ``path`` (last matching line wins)."""
    ignored = False
    for line in _lines(gitignore):
        negated = line.startswith("!")
        if PathPattern.compile(line[1:] if negated else line).matches_file_or_parent(path):
            ignored = not negated
    return ignored


def is_lfs_tracked(path: str, gitattributes: str) -> bool:
    """Whether ``.gitattributes`` content sets ``filter=lfs`` on ``path`` (a later line can unset it)."""
    tracked = False
    for line in _lines(gitattributes):
        glob, *attributes = line.split()
        for attribute in attributes:
            if attribute.lstrip("-!").split("=")[0] == "filter" and PathPattern.compile(glob).matches_file(path):
                tracked = attribute == "filter=lfs"
    return tracked


def choose_upload_mode(
    path: str,
    size: int,
    sample: bytes,
    *,
    gitattributes: str,
    regular_only: bool,
    lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
) -> UploadMode:
    """The Hub's rule for one file: LFS if ``.gitattributes`` tracks it, if it is large, or if it looks binary.

    ``regular_only`` answers "regular" for everything, which keeps a Xet-enabled client off Xet entirely.
    Empty files are always regular (LFS storage cannot hold them).
    """
    if regular_only or size == 0:
        return "regular"
    if is_lfs_tracked(path, gitattributes) or size > lfs_threshold or b"\0" in sample:
        return "lfs"
    return "regular"
