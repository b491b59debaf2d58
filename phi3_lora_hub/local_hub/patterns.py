"""Git path patterns: which files ``.gitattributes`` sends to LFS, which files ``.gitignore`` ignores.

Both files use gitignore-style globs: ``*`` and ``?`` stay within one path segment, ``**`` spans segments, a
pattern without a slash matches a name at any depth, a pattern with a slash is anchored at the repo root.
In ``.gitignore`` a trailing ``/`` restricts a pattern to directories (ignoring everything below them) and
``!`` re-includes; the last matching line wins. This is the subset the Hub's preupload decisions need.
"""

from __future__ import annotations

import functools
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


MAX_PATTERNS = 1000
"""Most pattern lines a ``.gitignore`` or ``.gitattributes`` may have (comments and blank lines aside)."""
MAX_PATTERN_LENGTH = 1000
"""Longest pattern line accepted in a ``.gitignore`` or ``.gitattributes``."""
PATTERN_FILES = (".gitignore", ".gitattributes")
"""The files whose patterns decide uploads; their size is checked with ``check_patterns`` when committed."""


def _segment_chunks(glob: str) -> list[str]:
    """The star-free parts of one path segment's glob, as regexes (``a*b?c`` -> ``["a", "b[^/]c"]``)."""
    chunks = [""]
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            chunks.append("")
            while i < len(glob) and glob[i] == "*":
                i += 1
            continue
        if char == "?":
            chunks[-1] += "[^/]"
        elif char == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1 : end]
            chunks[-1] += f"[^/{body[1:]}]" if body.startswith("!") else f"[{body}]"
            i = end
        elif char == "\\" and i + 1 < len(glob):
            i += 1
            chunks[-1] += re.escape(glob[i])
        else:
            chunks[-1] += re.escape(char)
        i += 1
    return chunks


def _segment_regex(glob: str) -> str:
    """One segment's glob as a regex that backtracks at most linearly.

    The parts between stars have a fixed length, so taking the leftmost place where each next part matches is
    always right: every star but the last is an atomic lazy group that commits to that place.
    """
    chunks = _segment_chunks(glob)
    if len(chunks) == 1:
        return chunks[0]
    middle = "".join(f"(?>[^/]*?{chunk})" for chunk in chunks[1:-1])
    return f"{chunks[0]}{middle}[^/]*{chunks[-1]}"


def _glob_to_regex(glob: str) -> str:
    """A whole-path glob as a regex with the same leftmost-commit form at the level of segments.

    ``**`` segments split the glob into groups of a fixed number of segments; each group but the last commits
    to the first place it matches, so no combination of ``**`` is ever retried (``**/`` x 10 + ``x`` on a
    22-segment path is as fast as ``**/x``).
    """
    groups: list[list[str]] = [[]]
    for segment in glob.split("/"):
        if segment == "**":
            groups.append([])
        else:
            groups[-1].append(_segment_regex(segment))
    last = len(groups) - 1
    parts = []
    for index, group in enumerate(groups):
        body = "/".join(group)
        if index == 0:
            parts.append(f"{body}/" if body and last else body)
        elif index < last:
            parts.append(f"(?>(?:[^/]*/)*?{body}/)" if body else "")
        else:
            parts.append(f"(?:[^/]*/)*{body}" if body else ".+")  # a trailing "**" is everything below
    return "".join(parts)


@dataclass(frozen=True)
class PathPattern:
    """One gitignore-style glob, compiled for the file itself and for the file or a folder above it."""

    file: re.Pattern[str] | None
    """Matches the paths the pattern names (``None`` for a folder-only pattern, which names no file)."""
    file_or_parent: re.Pattern[str]
    """Matches the paths the pattern names or that lie below a folder it names."""

    @classmethod
    def compile(cls, glob: str) -> PathPattern:
        directory_only = glob.endswith("/")
        glob = glob.rstrip("/")
        anchored = "/" in glob
        regex = _glob_to_regex(glob.lstrip("/") if anchored else f"**/{glob}")
        below = f"{regex}/.+" if directory_only else f"{regex}(?:/.+)?"
        return cls(None if directory_only else re.compile(regex), re.compile(below))

    def matches_file(self, path: str) -> bool:
        """Whether the pattern names this file itself."""
        return self.file is not None and self.file.fullmatch(path) is not None

    def matches_file_or_parent(self, path: str) -> bool:
        """Whether the pattern names this file or one of the directories that contain it."""
        return self.file_or_parent.fullmatch(path) is not None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@functools.lru_cache(maxsize=32)
def _ignore_rules(gitignore: str) -> tuple[tuple[PathPattern, bool], ...]:
    """The compiled lines of a ``.gitignore``: (pattern, negated) in file order."""
    rules = []
    for line in _lines(gitignore):
        negated = line.startswith("!")
        rules.append((PathPattern.compile(line[1:] if negated else line), negated))
    return tuple(rules)


@functools.lru_cache(maxsize=32)
def _lfs_rules(gitattributes: str) -> tuple[tuple[PathPattern, bool], ...]:
    """The ``filter`` settings of a ``.gitattributes``: (pattern, sets filter=lfs) in file order."""
    rules = []
    for line in _lines(gitattributes):
        glob, *attributes = line.split()
        for attribute in attributes:
            if attribute.lstrip("-!").split("=")[0] == "filter":
                rules.append((PathPattern.compile(glob), attribute == "filter=lfs"))
    return tuple(rules)


def check_patterns(text: str) -> None:
    """Raise ``ValueError`` (saying what to change) for pattern-file content too large to match against cheaply.

    Matching is linear in the path and the pattern; the caps bound the work of one preupload.
    """
    lines = _lines(text)
    if len(lines) > MAX_PATTERNS or any(len(line) > MAX_PATTERN_LENGTH for line in lines):
        raise ValueError(
            f"it has {len(lines)} patterns, the longest {max(map(len, lines))} characters; at most "
            f"{MAX_PATTERNS} patterns of at most {MAX_PATTERN_LENGTH} characters are accepted"
        )


def is_ignored(path: str, gitignore: str) -> bool:
    """Whether ``.gitignore`` content ``gitignore`` ignores the file ``path`` (last matching line wins)."""
    ignored = False
    for pattern, negated in _ignore_rules(gitignore):
        if pattern.matches_file_or_parent(path):
            ignored = not negated
    return ignored


def is_lfs_tracked(path: str, gitattributes: str) -> bool:
    """Whether ``.gitattributes`` content sets ``filter=lfs`` on ``path`` (a later line can unset it)."""
    tracked = False
    for pattern, sets_lfs in _lfs_rules(gitattributes):
        if pattern.matches_file(path):
            tracked = sets_lfs
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
