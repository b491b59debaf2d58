"""The local Hub's JSON files, written crash-safely (:mod:`phi3_lora_hub.atomic_write`), and the cleanup of the
temporary files a crash leaves behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from phi3_lora_hub.atomic_write import TMP_MARKER, atomic_write_bytes


def atomic_write_json(target: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``target`` atomically (sorted keys, so equal values give equal bytes)."""
    atomic_write_bytes(target, json.dumps(value, sort_keys=True, indent=1).encode("utf-8"))


def read_json(path: Path) -> Any:
    """Parse the JSON file at ``path`` (raises ``FileNotFoundError`` when it does not exist)."""
    with open(path, "rb") as handle:
        return json.load(handle)


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporary files left under ``root`` by an interrupted write; return how many were removed."""
    removed = 0
    for path in root.rglob(f"*{TMP_MARKER}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
