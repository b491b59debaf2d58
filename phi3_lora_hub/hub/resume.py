"""Resuming a run: from the newest complete checkpoint on the Hub, or the newest complete one on disk.

On the Hub, a checkpoint pushed with ``push_resumable_state=True`` lives on its branch (``step-N``) under
``checkpoint/``, and is complete only when ``checkpoint/COMPLETE.json`` is there and every file it lists has the
listed sha256. Branches are tried newest first; one without a valid marker (an upload cut by a kill, a pipelined
upload split into several commits) is refused with a log line and the previous one is used.

On disk, Trainer's own ``get_last_checkpoint`` picks the highest step even when that checkpoint was cut short
(disk full during the save) and then fails to resume; :func:`newest_complete_checkpoint` skips such folders.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3_lora_hub.hub.errors import HubResumeError
from phi3_lora_hub.hub.files import missing_checkpoint_files
from phi3_lora_hub.hub.marker import MARKER_NAME, CompletionMarker
from phi3_lora_hub.hub.naming import DEFAULT_BRANCH_TEMPLATE, step_of_branch, validate_branch_template
from phi3_lora_hub.hub.publisher import make_api
from phi3_lora_hub.hub.retry import PushFailed, RetryPolicy, retrying
from phi3_lora_hub.hub.staging import RESUME_SUBDIR
from phi3_lora_hub.hub.timeouts import HttpTimeouts, TimeoutScope, install, scoped
from phi3_lora_hub.hub.tokens import Redactor, resolve_token
from phi3_lora_hub.run_file_names import TRAINER_STATE

logger = logging.getLogger("phi3_lora_hub.hub")

_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class HubCheckpoint:
    """A complete resumable checkpoint, downloaded from the Hub."""

    step: int
    branch: str
    commit: str
    path: Path
    """The local checkpoint folder: pass it to ``trainer.train(resume_from_checkpoint=...)``."""


def resume_checkpoint_from_hub(
    repo_id: str,
    download_dir: str | Path,
    *,
    branch_template: str = DEFAULT_BRANCH_TEMPLATE,
    token: str | None = None,
    endpoint: str | None = None,
    timeouts: HttpTimeouts | None = None,
    retry: RetryPolicy | None = None,
) -> HubCheckpoint | None:
    """Download the newest complete resumable checkpoint of ``repo_id`` into ``download_dir``.

    Returns ``None`` when the repository holds no complete checkpoint (or does not exist). Raises
    :class:`HubResumeError` when the Hub cannot be asked (after retries), so that a restart never silently
    begins from scratch because the network was down.
    """
    validate_branch_template(branch_template)
    token = resolve_token(token)
    redact = Redactor(token)
    api = make_api(endpoint, token)
    policy = retry or RetryPolicy()
    install()
    with scoped(TimeoutScope(timeouts or HttpTimeouts())):
        try:
            refs = retrying(lambda: api.list_repo_refs(repo_id), what="list branches", policy=policy, redact=redact)
        except PushFailed as error:
            if error.failure.status == 404:
                logger.info("Resume from the Hub: %s does not exist yet; nothing to resume", repo_id)
                return None
            raise HubResumeError(f"Cannot list the branches of {repo_id}: {error.failure.describe()}") from None
        candidates = sorted(
            ((step, ref) for ref in refs.branches if (step := step_of_branch(branch_template, ref.name)) is not None),
            key=lambda item: item[0],
            reverse=True,
        )
        for step, ref in candidates:
            target = Path(download_dir) / ref.name
            try:
                problem = _download_complete(api, repo_id, ref.target_commit, step, target, policy, redact)
            except PushFailed as error:
                raise HubResumeError(
                    f"Cannot download checkpoint {ref.name} of {repo_id}: {error.failure.describe()}"
                ) from None
            if problem is None:
                logger.info("Resume from the Hub: %s@%s (step %d)", repo_id, ref.name, step)
                return HubCheckpoint(step, ref.name, ref.target_commit, target / RESUME_SUBDIR)
            logger.warning(
                "Resume from the Hub: %s is not a complete checkpoint (%s); trying an older one", ref.name, problem
            )
            shutil.rmtree(target, ignore_errors=True)
    logger.info("Resume from the Hub: %s holds no complete resumable checkpoint", repo_id)
    return None


def _download_complete(
    api: Any, repo_id: str, commit: str, step: int, target: Path, policy: RetryPolicy, redact: Redactor
) -> str | None:
    """Download the checkpoint of one branch; return why it is not complete, or ``None`` when it is."""
    from huggingface_hub.errors import EntryNotFoundError

    shutil.rmtree(target, ignore_errors=True)
    marker_path = f"{RESUME_SUBDIR}/{MARKER_NAME}"

    def fetch_marker() -> str | None:
        try:
            return api.hf_hub_download(repo_id, marker_path, revision=commit, local_dir=target)
        except EntryNotFoundError:
            return None

    local_marker = retrying(fetch_marker, what=f"download {marker_path}", policy=policy, redact=redact)
    if local_marker is None:
        return "no completion marker: the upload did not finish"
    try:
        marker = CompletionMarker.from_json(Path(local_marker).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"unreadable completion marker: {error}"
    if marker.step != step:
        return f"its marker is for step {marker.step}"

    def fetch_files() -> None:
        api.snapshot_download(repo_id, revision=commit, allow_patterns=[f"{RESUME_SUBDIR}/*"], local_dir=target)

    retrying(fetch_files, what="download the checkpoint", policy=policy, redact=redact)
    problems = marker.problems(target / RESUME_SUBDIR)
    if problems:
        return "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
    missing = missing_checkpoint_files(target / RESUME_SUBDIR, resumable=True)
    if missing:
        return f"missing {', '.join(missing)}"
    return None


def newest_complete_checkpoint(output_dir: str | Path, *, resumable: bool = True) -> Path | None:
    """The ``checkpoint-N`` folder with the highest N that is complete (``None`` if there is none).

    Partial folders (a save cut short by a full disk or a kill) are skipped with a warning. Trainer writes
    ``trainer_state.json`` last, and not atomically: a kill while it is written leaves it cut short, so it must
    also parse and name the folder's own step (a copy renamed to another step is not taken either).
    """
    output_dir = Path(output_dir)
    found = sorted(
        (int(match.group(1)), path)
        for path in (output_dir.iterdir() if output_dir.is_dir() else [])
        if path.is_dir() and (match := _CHECKPOINT_DIR.fullmatch(path.name))
    )
    for number, path in reversed(found):
        missing = missing_checkpoint_files(path, resumable=resumable)
        if missing:
            logger.warning("Skipping incomplete %s (missing %s)", path, ", ".join(missing))
            continue
        step = checkpoint_step(path)
        if step != number:
            why = "unreadable, cut short by a crash?" if step is None else f"it is for step {step}"
            logger.warning("Skipping incomplete %s (its %s is %s)", path, TRAINER_STATE, why)
            continue
        return path
    return None


def checkpoint_step(path: str | Path) -> int | None:
    """The ``global_step`` recorded in a checkpoint's ``trainer_state.json``."""
    try:
        return int(json.loads((Path(path) / TRAINER_STATE).read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
