"""Comparing what is on the Hub with what is on disk, file by file (sha256)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from phi3_lora_hub.file_digest import sha256_of
from phi3_lora_hub.hub.files import GENERATED_FILES, adapter_file_names
from phi3_lora_hub.hub.retry import RetryPolicy

PUSH_THREAD = "phi3-lora-hub-push"
REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING: dict[str, Any] = {
    "max_steps": 6,
    "save_steps": 2,
    "per_device_train_batch_size": 4,
    "logging_steps": 1,
    "disable_tqdm": True,
}
"""Small runs: 6 steps, a checkpoint every 2."""
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.2, max_backoff=0.5)


def local_adapter_hashes(directory: Path) -> dict[str, str]:
    """sha256 of the adapter files a push publishes from ``directory`` (the allowlist)."""
    return {name: sha256_of(directory / name) for name in adapter_file_names(directory)}


def hub_hashes(api, repo_id: str, revision: str, target: Path) -> dict[str, str]:
    """sha256 of every file of ``repo_id`` at ``revision`` (downloaded into ``target``), ``.gitattributes`` aside."""
    folder = Path(api.snapshot_download(repo_id, revision=revision, local_dir=target / revision.replace("/", "_")))
    return {
        path.relative_to(folder).as_posix(): sha256_of(path)
        for path in folder.rglob("*")
        if path.is_file() and ".cache" not in path.parts and path.name != ".gitattributes"
    }


def assert_hub_holds(api, repo_id: str, revision: str, directory: Path, target: Path) -> dict[str, str]:
    """Assert ``revision`` holds exactly the adapter files of ``directory`` (same sha256) plus card and curve."""
    remote = hub_hashes(api, repo_id, revision, target)
    expected = local_adapter_hashes(directory)
    adapter_part = {name: digest for name, digest in remote.items() if name not in GENERATED_FILES}
    assert adapter_part == expected, f"{revision} differs from {directory}"
    assert "README.md" in remote
    return remote


def push_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == PUSH_THREAD and thread.is_alive()]


def commit_titles(api, repo_id: str, revision: str = "main") -> list[str]:
    return [commit.title for commit in api.list_repo_commits(repo_id, revision=revision)]


class AtStep(TrainerCallback):
    """Runs ``action()`` at the end of training step ``step`` (to inject a fault mid-training)."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action = step, action

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.action()
        return control


def when_settled(callback, action):
    """A function that waits (at most 30 s) until the callback's newest push is no longer pending, then acts."""
    import time

    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and callback.report.pushes[-1].status == "pending":
            time.sleep(0.05)
        action()

    return run
