"""The completion marker of a resumable checkpoint on the Hub: ``checkpoint/COMPLETE.json``, committed last.

It names the step and the sha256 of every file of the checkpoint. An upload can be cut anywhere (a killed process,
a pipelined upload split into several commits), so a checkpoint folder on the Hub counts as complete only when
its marker is there and every file it lists is present with that sha256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from phi3_lora_hub.file_digest import sha256_of
from phi3_lora_hub.hub.files import resumable_file_names

MARKER_NAME = "COMPLETE.json"
MARKER_FORMAT = "phi3-lora-hub/checkpoint-complete@1"


@dataclass(frozen=True)
class CompletionMarker:
    """Step and per-file sha256 of one complete checkpoint."""

    step: int
    files: dict[str, str]
    """Path relative to the checkpoint folder -> sha256."""
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def to_json(self) -> str:
        data = {"format": MARKER_FORMAT, "step": self.step, "created_at": self.created_at, "files": self.files}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CompletionMarker:
        """Parse a marker; ``ValueError`` when it is not one this library wrote."""
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"not JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
            raise ValueError(f"not a {MARKER_FORMAT} marker")
        step, files = data.get("step"), data.get("files")
        if not isinstance(step, int) or not isinstance(files, dict) or not files:
            raise ValueError("the marker has no step or no file list")
        if not all(isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in files.items()):
            raise ValueError("the marker's file list is malformed")
        return cls(step=step, files=dict(files), created_at=str(data.get("created_at", "")))

    @classmethod
    def for_directory(cls, directory: str | Path, step: int) -> CompletionMarker:
        """The marker of a checkpoint directory as it is now."""
        directory = Path(directory)
        names = [name for name in resumable_file_names(directory) if name != MARKER_NAME]
        return cls(step=step, files={name: sha256_of(directory / name) for name in names})

    def problems(self, directory: str | Path) -> list[str]:
        """Why ``directory`` does not hold exactly the files this marker lists (empty when it does)."""
        directory = Path(directory)
        problems = []
        for name, expected in sorted(self.files.items()):
            path = directory / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif sha256_of(path) != expected:
                problems.append(f"{name} has another sha256 than the marker says")
        return problems
