"""``HubUploader``: push one staged checkpoint to ``main`` and to its branch, with retries and idempotent commits.

One push, request by request:

1. commit the adapter files and the card to ``main`` (files the publisher wrote earlier and that are gone now are
   deleted, other files on ``main`` are left alone);
2. create the checkpoint's branch (``step-N``) at that commit, so the branch and ``main`` hold the same files;
3. with resumable state: commit ``checkpoint/*`` to the branch, then, in a separate last commit, the completion
   marker ``checkpoint/COMPLETE.json``.

Every request is retried with backoff on transient errors (5xx, 429, timeouts, lost connections). Commits go
through ``create_commit`` with ``parent_commit`` set to the head they were computed against, so:

- a replay after an ambiguous failure (a read timeout: did the commit land?) starts by re-reading the branch head
  and its files; if the commit had landed, every file is unchanged and ``huggingface_hub`` sends no commit at all,
  so a retried commit never creates a duplicate;
- a stalled request that the server applies late is refused with 412 (its parent is no longer the head) instead
  of landing a second time;
- when every attempt failed and one of them may have been applied (no answer came back), the branch head is read
  once more: a commit that landed after all is not reported as failed;
- a concurrent writer on the branch (412) makes the uploader re-read the head and try again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from phi3_lora_hub.hub.files import PUBLISHED_FILES
from phi3_lora_hub.hub.marker import MARKER_NAME, CompletionMarker
from phi3_lora_hub.hub.retry import Failure, PushFailed, RetryPolicy, Stopper, retrying
from phi3_lora_hub.hub.staging import RESUME_SUBDIR, StagedCheckpoint
from phi3_lora_hub.hub.timeouts import ensure_hook

logger = logging.getLogger("phi3_lora_hub.hub")

T = TypeVar("T")


@dataclass
class PushOutcome:
    """What one push left on the Hub."""

    commit: str
    """The commit on ``main``."""
    branch: str | None
    branch_commit: str | None
    resumable: bool
    attempts: int


@dataclass
class _BranchState:
    head: str
    files: set[str]


def owned_by_publisher(path: str) -> bool:
    """Files the publisher may replace or delete on the Hub: the ones it writes itself."""
    return path in PUBLISHED_FILES or path.startswith(f"{RESUME_SUBDIR}/")


class HubUploader:
    """Pushes staged checkpoints to ``repo_id`` through the plugin's own ``HfApi``; one push at a time.

    Args:
        api: an ``huggingface_hub.HfApi`` holding the endpoint and the token.
        repo_id: the model repository (it must exist).
        retry: attempts and backoff for every request.
        redact: removes the token from error text.
        stopper: waits between attempts and aborts at the flush deadline.
    """

    def __init__(
        self,
        api: Any,
        repo_id: str,
        *,
        retry: RetryPolicy,
        redact: Callable[[str], str],
        stopper: Stopper | None = None,
    ) -> None:
        self.api = api
        self.repo_id = repo_id
        self.retry = retry
        self.redact = redact
        self.stopper = stopper or Stopper()
        self._branches: dict[str, _BranchState] = {}
        self._attempts = 0
        self._label = ""

    # -- one push ----------------------------------------------------------------------------------------------

    def push(self, staged: StagedCheckpoint, *, branch: str | None) -> PushOutcome:
        """Push ``staged`` to ``main`` and, when ``branch`` is given, to that branch (resumable state included).

        Raises :class:`PushFailed` when a request fails for good, :class:`PushAborted` when stopped.
        """
        self._attempts = 0
        self._label = staged.label
        self._branches = {name: state for name, state in self._branches.items() if name == "main"}
        changed = staged.changed_files()
        if changed:
            raise PushFailed(
                f"{staged.label}: files changed after staging ({', '.join(changed[:5])}); not pushed",
                Failure("permanent", "checkpoint files were rewritten while waiting to be pushed"),
            )
        push_id = uuid.uuid4().hex[:12]
        description = f"Pushed by phi3-lora-hub (push {push_id}) from {staged.source.name}."
        adapter_files = {path.name: path for path in sorted(staged.adapter_dir.iterdir()) if path.is_file()}
        commit = self._commit("main", adapter_files, title=self._title(staged), description=description, mirror=True)
        if branch is None:
            return PushOutcome(commit, None, None, False, self._attempts)
        head = self._create_branch(branch, commit, adapter_files, staged, description)
        resumable = False
        if staged.resume_dir is not None:
            head = self._push_resumable_state(staged, branch, description)
            resumable = True
        return PushOutcome(commit, branch, head, resumable, self._attempts)

    def _push_resumable_state(self, staged: StagedCheckpoint, branch: str, description: str) -> str:
        assert staged.resume_dir is not None
        root = staged.resume_dir
        files = {
            f"{RESUME_SUBDIR}/{path.relative_to(root).as_posix()}": path
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != MARKER_NAME
        }
        title = f"Checkpoint step {staged.step}: resumable state"
        self._commit(branch, files, title=title, description=description, mirror=False)
        # Written last, in its own commit: a checkpoint folder without it is never taken for a complete one.
        marker = CompletionMarker.for_directory(root, staged.step)
        marker_file = {f"{RESUME_SUBDIR}/{MARKER_NAME}": marker.to_json().encode()}
        title = f"Checkpoint step {staged.step}: completion marker"
        return self._commit(branch, marker_file, title=title, description=description, mirror=False)

    @staticmethod
    def _title(staged: StagedCheckpoint) -> str:
        return f"Adapter after step {staged.step}" if staged.final else f"Checkpoint step {staged.step}"

    # -- commits and branches ----------------------------------------------------------------------------------

    def _state(self, revision: str) -> _BranchState:
        info = self.api.repo_info(self.repo_id, revision=revision)
        if info.siblings is not None:
            files = {sibling.rfilename for sibling in info.siblings}
        else:
            files = set(self.api.list_repo_files(self.repo_id, revision=info.sha))
        return _BranchState(head=info.sha, files=files)

    def _commit(
        self,
        revision: str,
        files: Mapping[str, Path | bytes],
        *,
        title: str,
        description: str,
        mirror: bool,
    ) -> str:
        """Commit ``files`` to ``revision`` (deleting stale publisher files when ``mirror``); return the new head."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        state = self._branches.pop(revision, None)
        deleted: list[str] = []

        def attempt() -> str:
            nonlocal state, deleted
            if state is None:  # first push to this branch, or after any failure: the head may have moved
                state = self._state(revision)
            deleted = sorted(p for p in state.files if mirror and owned_by_publisher(p) and p not in files)
            operations: list[Any] = [CommitOperationAdd(path, source) for path, source in files.items()]
            operations += [CommitOperationDelete(path) for path in deleted]
            # New operation objects on every attempt: create_commit consumes them.
            info = self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=title,
                commit_description=description,
                revision=revision,
                parent_commit=state.head,
                num_threads=1,
            )
            return info.oid

        ambiguous = False

        def forget(failure: Failure) -> None:
            nonlocal state, ambiguous
            state = None
            ambiguous = ambiguous or failure.ambiguous

        try:
            head = self._call(f"commit to {revision}", attempt, after_failure=forget)
        except PushFailed as error:
            if not ambiguous:
                raise
            # An attempt whose answer was lost may have been applied: ask the Hub before calling the push failed.
            landed = self._landed(revision, title, description)
            if landed is None:
                raise PushFailed(
                    f"{error}; an earlier attempt may have been applied (its answer was lost) and the Hub could not "
                    "be asked whether it was",
                    error.failure,
                ) from None
            if not landed:
                raise
            logger.info("%s: commit to %s was applied although its answer was lost", self._label, revision)
            state = self._call(f"read {revision}", lambda: self._state(revision))
            head, deleted = landed, []
        self._branches[revision] = _BranchState(head, (state.files - set(deleted)) | set(files))
        return head

    def _landed(self, revision: str, title: str, description: str) -> str | bool | None:
        """The head of ``revision`` when it is the commit ``title``/``description`` names (it landed after all),
        ``False`` when it is another one, ``None`` when the Hub cannot be asked."""
        try:
            commits = retrying(
                lambda: self.api.list_repo_commits(self.repo_id, revision=revision),
                what=f"check the head of {revision}",
                policy=self.retry,
                redact=self.redact,
                stopper=self.stopper,
                log=logger,
                label=self._label,
            )
        except PushFailed:
            return None
        head = commits[0] if commits else None
        if head is not None and head.title == title and description in (head.message or ""):
            return head.commit_id
        return False

    def _branch_head(self, branch: str) -> str | None:
        refs = self.api.list_repo_refs(self.repo_id)
        return next((ref.target_commit for ref in refs.branches if ref.name == branch), None)

    def _create_branch(
        self, branch: str, commit: str, files: Mapping[str, Path], staged: StagedCheckpoint, description: str
    ) -> str:
        """Point a new ``branch`` at ``commit``; a branch left by an earlier run gets the same files committed."""
        from huggingface_hub.errors import HfHubHTTPError

        def attempt() -> str | None:
            try:
                self.api.create_branch(self.repo_id, branch=branch, revision=commit)
            except HfHubHTTPError as error:
                if error.response is None or error.response.status_code != 409:
                    raise
                # It exists: created by our own earlier attempt (the answer was lost), or by an earlier run.
                return commit if self._branch_head(branch) == commit else None
            return commit

        head = self._call(f"create branch {branch}", attempt)
        if head is None:
            logger.info("%s: branch %s exists from an earlier run; updating it", staged.label, branch)
            head = self._commit(branch, files, title=self._title(staged), description=description, mirror=True)
        else:
            self._branches[branch] = _BranchState(head, set(self._branches["main"].files))
        return head

    # -- retries -----------------------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T], *, after_failure: Callable[[Failure], None] | None = None) -> T:
        def counted() -> T:
            self._attempts += 1
            ensure_hook()  # someone may have replaced huggingface_hub's client since the last request
            return call()

        return retrying(
            counted,
            what=what,
            policy=self.retry,
            redact=self.redact,
            stopper=self.stopper,
            after_failure=after_failure,
            log=logger,
            label=self._label,
        )
