"""Tell a local path from a Hub id, and say exactly what is missing when a local path is wrong.

A model, adapter or dataset may be named by a Hub id (``namespace/name``) or by a local path, and
``quickstart-output/adapter`` fits both. It is read as a local path when it exists, when it is written like one
(``./x``, ``/x``, ``~/x``, a backslash, more than one ``/``), or when its first part is a folder here: a typo in a
local path then says which path was looked for, what is there, and what to pass, instead of "repository not found".
"""

from __future__ import annotations

from pathlib import Path

_SEARCH_DEPTH = 3
_SHOWN = 5


def looks_local(reference: str) -> bool:
    """Whether ``reference`` names a local path rather than a Hub id (see the module docstring)."""
    text = reference.strip()
    if not text:
        return False
    path = Path(text).expanduser()
    if path.exists() or text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    first = text.split("/", 1)[0]
    return "/" in text and Path(first).is_dir()


def _holding(root: Path, marker: str) -> list[Path]:
    """Folders under ``root`` (itself included, a few levels deep, hidden ones skipped) that hold ``marker``."""
    found: list[Path] = []
    for depth in range(_SEARCH_DEPTH + 1):
        matches = root.glob("/".join(["*"] * depth + [marker]))
        found.extend(
            sorted(p.parent for p in matches if not any(part.startswith(".") for part in p.parts[-depth - 1 :]))
        )
        if len(found) >= _SHOWN:
            break
    return found[:_SHOWN]


def missing_directory_message(what: str, reference: str, marker: str, hint: str) -> str | None:
    """Why ``reference`` (a local path, see :func:`looks_local`) is not a usable ``what`` directory, or ``None``.

    ``marker`` is the file such a directory holds (``config.json``, ``adapter_config.json``); the message says
    where it was looked for, lists directories nearby that do hold it, and ends with ``hint`` (what to pass).
    """
    path = Path(reference).expanduser()
    where = path.resolve()
    if path.is_dir() and (path / marker).is_file():
        return None
    if path.is_dir():
        problem = f"{what} directory {reference!r} has no {marker} (looked in {where})"
        root: Path | None = path
    elif path.exists():
        problem = f"{what} {reference!r} is a file, not a directory ({where})"
        root = path.parent
    else:
        problem = f"{what} directory {reference!r} does not exist (looked for {where})"
        root = path.parent if path.parent.is_dir() else None  # a typo in the last part: look around it
    candidates = _holding(root, marker) if root is not None else []
    if candidates:
        shown = ", ".join(repr(str(candidate)) for candidate in candidates)
        problem += f". Directories nearby holding {marker}: {shown}"
    return f"{problem}. {hint}"
