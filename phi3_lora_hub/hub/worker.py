"""The background push worker: one thread, coalescing, and a flush that keeps its deadline.

Saves hand staged checkpoints to :meth:`PushWorker.submit` and return at once. The worker pushes one at a time.
While it is busy, at most one training checkpoint waits: a newer save replaces the waiting one (its branch is
skipped, never the newest checkpoint's), and the final adapter waits in its own slot, pushed after the last
checkpoint. :meth:`PushWorker.finish` lets the queue drain until a deadline, then stops the worker: its requests
time out by the deadline (see :mod:`phi3_lora_hub.hub.timeouts`), so the thread is gone when ``finish`` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from phi3_lora_hub.hub.report import CheckpointPush
from phi3_lora_hub.hub.retry import PushAborted, Stopper
from phi3_lora_hub.hub.staging import StagedCheckpoint
from phi3_lora_hub.hub.timeouts import TimeoutScope, scoped

logger = logging.getLogger("phi3_lora_hub.hub")

_JOIN_GRACE_S = 5.0
"""How long ``finish`` waits past the deadline for a request already cut by its timeout to return."""


class StopSignal(Stopper):
    """Stops pushes at a deadline (set by the flush, possibly while a push waits) or at once (``abort``)."""

    def __init__(self, scope: TimeoutScope) -> None:
        self._scope = scope
        self._aborted = False
        self._changed = threading.Condition()

    @property
    def deadline(self) -> float | None:
        return self._scope.deadline

    def set_deadline(self, deadline: float) -> None:
        with self._changed:
            self._scope.deadline = deadline  # requests in the worker's scope are cut at the same moment
            self._changed.notify_all()

    def abort(self) -> None:
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    def check(self) -> None:
        if self._aborted:
            raise PushAborted("the publisher was closed")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise PushAborted("the flush deadline was reached")

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        with self._changed:
            while not self._aborted:
                limit = end if self.deadline is None else min(end, self.deadline)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)  # woken early when a deadline is set or the worker aborted
        self.check()


@dataclass
class PushJob:
    """One staged checkpoint, where it goes, and the report entry that records what became of it."""

    staged: StagedCheckpoint
    branch: str | None
    record: CheckpointPush
    hub_branches: dict[int, str] | None = None
    """Checkpoint branches already on the Hub (step -> name) for the card; ``None``: the ones pushed this run."""
    also: list[CheckpointPush] = field(default_factory=list)
    """Records of jobs merged into this one (the last checkpoint, pushed with the final adapter of its step)."""


class PushWorker:
    """Runs ``process(job)`` for submitted jobs on one daemon thread, inside ``scope`` (the HTTP timeouts)."""

    def __init__(
        self,
        process: Callable[[PushJob], None],
        *,
        scope: TimeoutScope,
        on_skipped: Callable[[PushJob, PushJob], None],
        merge: Callable[[PushJob, PushJob], PushJob] | None = None,
        name: str = "phi3-lora-hub-push",
    ) -> None:
        self._process = process
        self._on_skipped = on_skipped
        self._merge = merge
        self._scope = scope
        self.stop = StopSignal(scope)
        self._guard = threading.Condition()
        self._waiting: PushJob | None = None
        self._final: PushJob | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, job: PushJob) -> None:
        """Queue ``job``; a waiting training checkpoint is replaced by a newer one (``on_skipped(old, new)``).

        The final adapter of the step of the waiting checkpoint replaces it too, as one push (``merge(waiting,
        final)``): same step, same weights, so ``main`` and the checkpoint's branch get one commit instead of two.
        """
        with self._guard:
            if self._closing:
                raise RuntimeError("the push worker is finishing; no new pushes are accepted")
            waiting = self._waiting
            if job.staged.final and waiting is not None and waiting.staged.step == job.staged.step and self._merge:
                self._final, self._waiting = self._merge(waiting, job), None
            elif job.staged.final:
                self._final = job
            else:
                if self._waiting is not None:
                    self._on_skipped(self._waiting, job)
                self._waiting = job
            self._guard.notify_all()

    def _next(self) -> PushJob | None:
        with self._guard:
            while self._waiting is None and self._final is None and not self._closing:
                self._guard.wait()
            try:
                self.stop.check()
            except PushAborted:
                return None
            job = self._waiting or self._final
            if job is None:
                return None
            if job is self._waiting:
                self._waiting = None
            else:
                self._final = None
            return job

    def _run(self) -> None:
        with scoped(self._scope):
            while (job := self._next()) is not None:
                try:
                    self._process(job)
                except Exception:  # process() records its own failures; this is a bug, keep the worker alive
                    logger.exception("unexpected error while pushing %s", job.staged.label)

    def finish(self, timeout: float) -> list[PushJob]:
        """Push what is queued until ``timeout`` seconds from now, then stop; return the jobs never started.

        Returns as soon as the queue is empty. The thread has ended when this returns, except when a transfer
        outside the plugin's timeouts (hf_xet, parallel LFS uploads) is still running; it is a daemon thread
        and is told to stop at its next request.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._guard:
            self._closing = True
            self.stop.set_deadline(deadline)
            self._guard.notify_all()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()) + _JOIN_GRACE_S)
        if self._thread.is_alive():
            self.stop.abort()
            logger.warning("the push worker is still in a transfer after the flush deadline; it was told to stop")
        with self._guard:
            left = [job for job in (self._waiting, self._final) if job is not None]
            self._waiting = self._final = None
        return left
