"""``HubPublisher``: publishing checkpoints while training runs, independent of any Trainer.

The publisher owns an ``HfApi`` (its endpoint and token), the staging folder, the background worker and the
report. :class:`~phi3_lora_hub.callbacks.hub_push.HubPushCallback` drives it from Trainer events; the recipe
calls it directly for the final adapter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from phi3_lora_hub.cards import CardOptions, write_card
from phi3_lora_hub.cards.run_files import RunFiles
from phi3_lora_hub.hub.errors import HubAuthError, HubError, HubPushError
from phi3_lora_hub.hub.files import missing_adapter_files, missing_checkpoint_files
from phi3_lora_hub.hub.naming import branch_name, step_of_branch
from phi3_lora_hub.hub.report import CheckpointPush, HubPushReport
from phi3_lora_hub.hub.retry import PushAborted, PushFailed, RetryPolicy, failure_of, retrying
from phi3_lora_hub.hub.settings import HubPushSettings
from phi3_lora_hub.hub.staging import STAGE_DIRNAME, clear_stage_root, stage
from phi3_lora_hub.hub.timeouts import TimeoutScope, install, scoped
from phi3_lora_hub.hub.tokens import Redactor, check_token, raise_for_repo_access, resolve_token
from phi3_lora_hub.hub.uploader import HubUploader
from phi3_lora_hub.hub.worker import PushJob, PushWorker, StopSignal
from phi3_lora_hub.run_file_names import RECIPE_FILE, TRAINING_ARGS_JSON
from phi3_lora_hub.version import __version__

logger = logging.getLogger("phi3_lora_hub.hub")

_STARTUP_RETRY = RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=2.0)
"""Checking the token before training: a few quick tries, then training starts and pushes retry on their own."""


def make_api(endpoint: str | None, token: str | None) -> Any:
    """The publisher's own ``HfApi`` (its own endpoint and token; nothing shared with Trainer's singleton)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token, library_name="phi3-lora-hub", library_version=__version__)


class HubPublisher:
    """Stage, push in the background, flush, report. See ``HubPushCallback`` for the Trainer integration."""

    def __init__(self, settings: HubPushSettings, *, token: str | None = None) -> None:
        self.settings = settings
        self.repo_id = settings.repo_id
        self._explicit_token = token
        self._api: Any = None
        self._redact = Redactor(token)
        self._ready = False
        self._unreachable_at_start = False
        """The startup check found the Hub unreachable; the first push checks again, ``prepare`` does not."""
        self._worker: PushWorker | None = None
        self._uploader: HubUploader | None = None
        self._stage_root: Path | None = None
        self.report = HubPushReport(self.repo_id, self.repo_url)

    def __repr__(self) -> str:  # never the token
        return f"HubPublisher(repo_id={self.repo_id!r}, endpoint={self.endpoint!r})"

    @property
    def explicit_token(self) -> str | None:
        """The token passed to the constructor, if any (``None``: resolved from the environment or login)."""
        return self._explicit_token

    @property
    def endpoint(self) -> str:
        if self._api is not None:
            return self._api.endpoint
        from huggingface_hub import constants

        return (self.settings.endpoint or constants.ENDPOINT).rstrip("/")

    @property
    def repo_url(self) -> str:
        return f"{self.endpoint}/{self.repo_id}"

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def started(self) -> bool:
        """Whether a publishing session was ever started (only on the main process of a multi-process run)."""
        return self._uploader is not None

    # -- before training ---------------------------------------------------------------------------------------

    def prepare(self, *, strict: bool = False) -> None:
        """Check the token and create the repository, once; raise ``HubAuthError`` when pushing cannot work.

        Fails fast on a missing, rejected (401) or read-only (403) token. When the Hub cannot be reached, logs a
        warning and returns (training starts, and the first push tries again; later calls return at once), or with
        ``strict`` raises ``HubError``.
        """
        if self._ready or (self._unreachable_at_start and not strict):
            return
        from huggingface_hub import constants

        if constants.is_offline_mode():
            raise HubError(
                f"HF_HUB_OFFLINE=1 is set, so nothing can be pushed to {self.repo_id}: unset it, or remove "
                "hub_model_id to train without pushing."
            )
        if self._api is None:
            token = resolve_token(self._explicit_token)
            self._redact = Redactor(token)
            self._api = make_api(self.settings.endpoint, token)
            install()
        with scoped(TimeoutScope(self.settings.request_timeouts)):
            try:
                self._create_repo(_STARTUP_RETRY)
            except PushFailed as error:
                if strict:
                    raise HubError(f"Cannot reach the Hub at {self.endpoint}: {error.failure.describe()}") from None
                self._unreachable_at_start = True
                logger.warning(
                    "Cannot reach the Hub at %s to check the token and create %s (%s). Training starts anyway; "
                    "each push tries again.",
                    self.endpoint,
                    self.repo_id,
                    error.failure.describe(),
                )

    def _create_repo(self, policy: RetryPolicy) -> None:
        api, redact = self._api, self._redact

        def check() -> Any:
            return check_token(api, api.token, redact)

        owner = retrying(check, what="token check", policy=policy, redact=redact, log=logger)
        if "/" not in self.repo_id:  # a bare name lands in the token owner's namespace, as on the Hub
            self.repo_id = f"{owner.name}/{self.repo_id}"
            self.report.repo_id, self.report.repo_url = self.repo_id, self.repo_url

        def create() -> None:
            try:
                api.create_repo(self.repo_id, private=self.settings.private, exist_ok=True)
            except Exception as error:
                raise_for_repo_access(error, self.repo_id, owner, redact)
                raise

        retrying(create, what=f"create {self.repo_id}", policy=policy, redact=redact, log=logger)
        self._ready = True

    # -- while training ----------------------------------------------------------------------------------------

    def start(self, output_dir: str | Path) -> None:
        """Start a publishing session for a run writing to ``output_dir`` (a no-op while one is running)."""
        if self._worker is not None:
            return
        self.prepare()
        self._stage_root = Path(output_dir) / STAGE_DIRNAME
        removed = clear_stage_root(self._stage_root)
        if removed:
            logger.info("Removed %d staged checkpoint(s) left by an earlier run: %s", len(removed), ", ".join(removed))
        self.report = HubPushReport(self.repo_id, self.repo_url)
        self._worker = PushWorker(
            self._process,
            scope=TimeoutScope(self.settings.request_timeouts),
            on_skipped=self._skipped,
            merge=self._merge,
        )
        self._uploader = HubUploader(
            self._api, self.repo_id, retry=self.settings.retry, redact=self._redact, stopper=self._worker.stop
        )
        self._worker.start()

    def submit_checkpoint(self, checkpoint_dir: str | Path, step: int, *, training_args: Any = None) -> CheckpointPush:
        """Stage a saved Trainer checkpoint and queue its push to ``main`` and its branch; returns at once."""
        return self._submit(Path(checkpoint_dir), step, final=False, training_args=training_args)

    def submit_final(self, adapter_dir: str | Path, step: int) -> CheckpointPush:
        """Stage the final adapter directory and queue its push to ``main`` (after the last checkpoint)."""
        return self._submit(Path(adapter_dir), step, final=True, training_args=None)

    def _submit(self, source: Path, step: int, *, final: bool, training_args: Any) -> CheckpointPush:
        if self._worker is None or self._stage_root is None:
            raise RuntimeError("HubPublisher.start(output_dir) must be called before submitting checkpoints")
        branch = None if final else branch_name(self.settings.branch_template, step)
        record = CheckpointPush(step=step, final=final, branch=branch)
        self.report.pushes.append(record)
        resumable = self.settings.push_resumable_state and not final
        missing = missing_adapter_files(source) if final else missing_checkpoint_files(source, resumable=resumable)
        if missing:  # a partial checkpoint (e.g. disk full during the save) is never pushed
            return self._refuse(record, f"{source} is incomplete (missing {', '.join(missing)}); not pushed")
        try:
            staged = stage(source, self._stage_root, step, resumable=resumable, final=final)
            if training_args is not None and not (staged.adapter_dir / RECIPE_FILE).is_file():
                _write_training_args(staged.adapter_dir / TRAINING_ARGS_JSON, training_args)
        except OSError as error:
            return self._refuse(record, f"cannot stage {source.name}: {failure_of(error, self._redact).cause}")
        self._worker.submit(PushJob(staged, branch, record))
        return record

    def _refuse(self, record: CheckpointPush, reason: str) -> CheckpointPush:
        record.status, record.error = "failed", self._redact(reason)
        logger.error("%s: %s", record.label, record.error)
        return record

    def _skipped(self, old: PushJob, new: PushJob) -> None:
        old.record.status = "skipped"
        old.record.error = f"step {new.staged.step} was saved before it could be pushed"
        old.staged.remove()
        logger.info("Hub: %s skipped, step %d was saved before it could be pushed", old.record.label, new.staged.step)

    def _merge(self, checkpoint: PushJob, final: PushJob) -> PushJob:
        """One push for the last checkpoint and the final adapter of the same step (called by the worker)."""
        final.staged.take_resumable_state(checkpoint.staged)
        checkpoint.staged.remove()
        final.branch = checkpoint.branch
        final.also.append(checkpoint.record)
        checkpoint.record.with_final = True
        logger.info("Hub: %s is pushed together with the final adapter of its step", checkpoint.record.label)
        return final

    def _pushed_branches(self, job: PushJob) -> dict[int, str]:
        if job.hub_branches is not None:
            branches = dict(job.hub_branches)
        else:
            pushes = self.report.pushes
            branches = {p.step: p.branch for p in pushes if p.status == "pushed" and p.branch and not p.final}
        if job.branch is not None and (job.also or not job.staged.final):
            branches[job.staged.step] = job.branch
        return branches

    def _process(self, job: PushJob, uploader: HubUploader | None = None) -> None:
        """Render the card and push one staged checkpoint (on the worker thread, or in ``push_directory``)."""
        uploader = uploader or self._uploader
        assert uploader is not None
        record, staged = job.record, job.staged
        started = time.monotonic()
        try:
            if not self._ready:  # the Hub was unreachable before training: check the token and repo now
                self._create_repo(self.settings.retry)
            options = CardOptions(
                repo_id=self.repo_id,
                endpoint=self.endpoint,
                branch=job.branch,
                checkpoint=not staged.final,
                branches=self._pushed_branches(job),
                license=self.settings.card_license,
            )
            write_card(staged.adapter_dir, options, self.settings.card_template)
            outcome = uploader.push(staged, branch=job.branch)
        except PushAborted as error:
            record.status, record.error, record.kept_at = "unfinished", str(error), staged.directory
        except (PushFailed, HubAuthError) as error:
            record.status, record.error, record.kept_at = "failed", self._redact(str(error)), staged.directory
        except Exception as error:  # a bug or a local problem (template, disk): report it, keep the worker going
            record.status, record.kept_at = "failed", staged.directory
            record.error = failure_of(error, self._redact).describe()
        else:
            record.status, record.commit = "pushed", outcome.commit
            record.branch_commit, record.resumable = outcome.branch_commit, outcome.resumable
            record.attempts = outcome.attempts
            staged.remove()
        finally:
            record.seconds = time.monotonic() - started
        for merged in job.also:  # the last checkpoint went with the final adapter: same outcome
            merged.status, merged.error, merged.commit = record.status, record.error, record.commit
            merged.branch_commit, merged.resumable, merged.seconds = record.branch_commit, record.resumable, 0.0
        label = " + ".join(push.label for push in (record, *job.also))
        if record.status == "pushed":
            where = "main" + (f" and {job.branch}" if job.branch else "")
            logger.info("Hub: pushed %s to %s (commit %s, %.1f s)", label, where, record.commit, record.seconds)
        else:
            logger.error("Hub: %s NOT pushed: %s", label, record.error)

    # -- an existing adapter -----------------------------------------------------------------------------------

    def push_directory(self, directory: str | Path, *, branch: str | None = None) -> CheckpointPush:
        """Push an adapter directory now, with a fresh card, to ``main`` (and to ``branch`` when given).

        Blocks until done or ``flush_timeout`` has passed. Raises ``HubError`` when the Hub cannot be reached,
        ``HubAuthError`` for token problems, ``HubPushError`` when the push fails.
        """
        import tempfile

        directory = Path(directory)
        missing = missing_adapter_files(directory)
        if missing:
            raise HubError(
                f"{directory} is not a publishable adapter (missing {', '.join(missing)}); only safetensors "
                "adapters are published, never adapter_model.bin pickles."
            )
        self.prepare(strict=True)
        step = RunFiles.read(directory).step or 0
        record = CheckpointPush(step=step, final=True, branch=branch)
        self.report.pushes.append(record)
        scope = TimeoutScope(self.settings.request_timeouts, time.monotonic() + self.settings.flush_timeout)
        with tempfile.TemporaryDirectory(prefix="phi3-lora-hub-push-") as root, scoped(scope):
            staged = stage(directory, root, step, resumable=False, final=True)
            uploader = HubUploader(
                self._api, self.repo_id, retry=self.settings.retry, redact=self._redact, stopper=StopSignal(scope)
            )
            job = PushJob(staged, branch, record, hub_branches=self._hub_branches())
            self._process(job, uploader)
        record.kept_at = None  # the staging was temporary; the source directory is still there
        if record.status != "pushed":
            raise HubPushError(f"{directory} was not pushed to {self.repo_id}: {record.error}", self.report)
        return record

    def _hub_branches(self) -> dict[int, str]:
        """Checkpoint branches already in the repository (step -> name), for the card's checkpoint table."""
        try:
            refs = retrying(
                lambda: self._api.list_repo_refs(self.repo_id),
                what="list branches",
                policy=self.settings.retry,
                redact=self._redact,
            )
        except PushFailed as error:
            logger.warning("Cannot list the branches of %s (%s); the card links none", self.repo_id, error)
            return {}
        template = self.settings.branch_template
        return {step: ref.name for ref in refs.branches if (step := step_of_branch(template, ref.name)) is not None}

    # -- after training ----------------------------------------------------------------------------------------

    def finish(self, timeout: float | None = None, *, raise_on_failure: bool = True) -> HubPushReport:
        """Wait (at most ``timeout``, default ``flush_timeout`` seconds) for queued pushes, stop, and report.

        Logs the report. Staged copies are removed except the newest one that did not reach the Hub (the report
        says how to push it by hand). With ``on_failure="raise"`` and ``raise_on_failure``, raises
        :class:`HubPushError` when the report is not ok.
        """
        worker = self._worker
        if worker is None:
            return self.report
        left = worker.finish(self.settings.flush_timeout if timeout is None else timeout)
        self._worker = None
        for job in left:
            for record in (job.record, *job.also):
                record.status, record.error = "unfinished", "not started before the flush deadline"
            job.record.kept_at = job.staged.directory
        for record in self.report.pushes:
            if record.status == "pending":  # in flight when the deadline cut the worker off
                record.status, record.error = "unfinished", record.error or "still running at the flush deadline"
        self._clean_stagings()
        report = self.report
        if report.ok:
            logger.info("%s", report.summary())
        else:
            logger.warning("%s", report.summary())
            if raise_on_failure and self.settings.on_failure == "raise":
                raise HubPushError(report.summary(), report)
        return report

    def _clean_stagings(self) -> None:
        """Keep only the newest staging, and only when it did not reach the Hub: older ones are superseded."""
        newest = self.report.newest
        for record in self.report.pushes:
            if record.kept_at is not None and record is not newest:
                shutil.rmtree(record.kept_at, ignore_errors=True)
                record.kept_at = None
        if self._stage_root is not None:
            with contextlib.suppress(OSError):
                self._stage_root.rmdir()  # only when empty


def _write_training_args(path: Path, training_args: Any) -> None:
    """The hyperparameters of a plain Trainer run, as JSON, without any ``*_token`` field."""
    values = training_args.to_dict() if hasattr(training_args, "to_dict") else dict(training_args)
    values = {key: value for key, value in values.items() if not key.endswith("token")}
    path.write_text(json.dumps(values, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
