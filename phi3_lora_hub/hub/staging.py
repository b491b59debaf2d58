"""Immutable copies of checkpoints waiting to be pushed: ``<output_dir>/_hubstage/step-N``.

Staging happens in ``on_save``, synchronously and cheaply: files are hard-linked (copied where links are not
possible), so Trainer's checkpoint rotation (``save_total_limit``) can delete ``checkpoint-N`` while its push
waits, and the push still reads exactly what was saved at step N. Trainer ignores folders starting with ``_``.

A hard link shares the file with the checkpoint, so a program rewriting that file in place would change the staged
copy too; the size and modification time of every staged file are recorded and checked before upload
(:meth:`StagedCheckpoint.changed_files`), and a changed staging is refused rather than pushed.

Layout of one staging::

    _hubstage/step-6/adapter/        adapter-only files (+ README.md and loss_curve.png, written by the worker)
    _hubstage/step-6/checkpoint/     the resumable checkpoint (only with push_resumable_state=True)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from phi3_lora_hub.hub.files import adapter_file_names, resumable_file_names

STAGE_DIRNAME = "_hubstage"
ADAPTER_SUBDIR = "adapter"
RESUME_SUBDIR = "checkpoint"


@dataclass
class StagedCheckpoint:
    """A staged checkpoint: the files of step ``step`` as they were when it was saved."""

    step: int
    directory: Path
    source: Path
    """The directory it was staged from (``checkpoint-N``, or the final adapter directory)."""
    final: bool = False
    """The final adapter (pushed to ``main`` only) rather than a training checkpoint."""
    fingerprints: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Staged path (relative to ``directory``) -> (size, mtime_ns) at staging time."""

    @property
    def adapter_dir(self) -> Path:
        return self.directory / ADAPTER_SUBDIR

    @property
    def resume_dir(self) -> Path | None:
        path = self.directory / RESUME_SUBDIR
        return path if path.is_dir() else None

    @property
    def label(self) -> str:
        return f"final adapter (step {self.step})" if self.final else f"checkpoint step {self.step}"

    def changed_files(self) -> list[str]:
        """Staged files whose size or modification time changed since staging (rewritten in place, or gone)."""
        changed = []
        for relative, fingerprint in self.fingerprints.items():
            try:
                stat = (self.directory / relative).stat()
            except FileNotFoundError:
                changed.append(relative)
                continue
            if (stat.st_size, stat.st_mtime_ns) != fingerprint:
                changed.append(relative)
        return changed

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def take_resumable_state(self, other: StagedCheckpoint) -> None:
        """Move ``other``'s staged resumable checkpoint into this staging (same step; renames, no copies)."""
        source = other.resume_dir
        if source is None:
            return
        (self.directory / RESUME_SUBDIR).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, self.directory / RESUME_SUBDIR)
        prefix = f"{RESUME_SUBDIR}/"
        self.fingerprints.update({k: v for k, v in other.fingerprints.items() if k.startswith(prefix)})


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise
        shutil.copy2(source, target)  # another filesystem, or links not supported


def stage(
    source: str | Path, stage_root: str | Path, step: int, *, resumable: bool, final: bool = False
) -> StagedCheckpoint:
    """Stage the adapter files (and with ``resumable`` the whole checkpoint) of ``source`` for step ``step``.

    Replaces an older staging of the same step. Raises ``OSError`` when the files cannot be linked or copied; a
    half-made staging is removed before the error propagates.
    """
    source = Path(source)
    name = f"final-step-{step}" if final else f"step-{step}"
    directory = Path(stage_root) / name
    shutil.rmtree(directory, ignore_errors=True)
    staged = StagedCheckpoint(step=step, directory=directory, source=source, final=final)
    try:
        plan = [(ADAPTER_SUBDIR, name) for name in adapter_file_names(source)]
        if resumable:
            plan += [(RESUME_SUBDIR, relative) for relative in resumable_file_names(source)]
        for subdir, relative in plan:
            target = directory / subdir / relative
            _link_or_copy(source / relative, target)
            stat = target.stat()
            staged.fingerprints[f"{subdir}/{relative}"] = (stat.st_size, stat.st_mtime_ns)
    except BaseException:
        staged.remove()
        raise
    return staged


def clear_stage_root(stage_root: str | Path) -> list[str]:
    """Remove every staging under ``stage_root`` (left over by an earlier run); return the names removed."""
    root = Path(stage_root)
    if not root.is_dir():
        return []
    removed = sorted(path.name for path in root.iterdir())
    shutil.rmtree(root, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()
    return removed
