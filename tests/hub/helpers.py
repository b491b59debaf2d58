"""Small helpers shared by the local Hub tests."""

from __future__ import annotations

import json
from pathlib import Path

from phi3_testing import subprocess_env


def write_checkpoint(folder: Path, *, step: int = 1) -> dict[str, bytes]:
    """Write a small adapter-like folder (a binary weight file, JSON config, nested text); return its files."""
    files = {
        "adapter_config.json": json.dumps({"r": 8, "step": step}).encode(),
        # NUL bytes and the .safetensors suffix make this an LFS file for an LFS-capable server.
        "adapter_model.safetensors": bytes(range(256)) * 8 + step.to_bytes(4, "little"),
        "logs/notes.txt": f"step {step}\n".encode(),
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return files


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that may reach the local hub: this session's, online, this checkout."""
    return subprocess_env(**{"HF_HUB_OFFLINE": "0", **extra})
