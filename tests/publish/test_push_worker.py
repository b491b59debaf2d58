"""The background worker: coalescing (the newest checkpoint wins), the final adapter last, a flush deadline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from phi3_lora_hub.hub.report import CheckpointPush
from phi3_lora_hub.hub.retry import PushAborted
from phi3_lora_hub.hub.staging import StagedCheckpoint
from phi3_lora_hub.hub.timeouts import HttpTimeouts, TimeoutScope
from phi3_lora_hub.hub.worker import PushJob, PushWorker
from tests.publish.helpers import push_threads


def job(step: int, tmp_path: Path, final: bool = False) -> PushJob:
    staged = StagedCheckpoint(
        step=step, directory=tmp_path / f"s{step}", source=tmp_path / f"checkpoint-{step}", final=final
    )
    return PushJob(staged, None if final else f"step-{step}", CheckpointPush(step=step, final=final))


def make_worker(process, skipped: list) -> PushWorker:
    return PushWorker(
        process, scope=TimeoutScope(HttpTimeouts()), on_skipped=lambda old, new: skipped.append(old.staged.step)
    )


def test_waiting_checkpoints_are_replaced_by_newer_ones_and_the_final_adapter_goes_last(tmp_path):
    gate, order, skipped = threading.Event(), [], []

    def process(job: PushJob) -> None:
        gate.wait(5)
        order.append((job.staged.step, job.staged.final))

    worker = make_worker(process, skipped)
    worker.start()
    worker.submit(job(1, tmp_path))
    time.sleep(0.1)  # step 1 is being pushed (blocked on the gate)
    for step in (2, 3, 4):
        worker.submit(job(step, tmp_path))
    worker.submit(job(4, tmp_path, final=True))
    gate.set()
    assert worker.finish(5) == []
    assert order == [(1, False), (4, False), (4, True)]
    assert skipped == [2, 3]
    assert not worker.alive


def test_finish_keeps_its_deadline_and_the_thread_ends(tmp_path):
    started = threading.Event()

    def slow_process(job: PushJob) -> None:
        started.set()
        try:  # a push that would take 30 s, waiting the way retries do: the deadline cuts it short
            worker.stop.wait(30)
        except PushAborted:
            job.record.status = "unfinished"

    worker = make_worker(slow_process, [])
    worker.start()
    first = job(1, tmp_path)
    worker.submit(first)
    started.wait(5)
    worker.submit(job(2, tmp_path))
    began = time.monotonic()
    left = worker.finish(1.0)
    assert time.monotonic() - began < 2.5
    assert [j.staged.step for j in left] == [2]  # never started
    assert first.record.status == "unfinished"
    assert not worker.alive and not push_threads()


def test_a_deadline_in_the_past_stops_requests_before_they_are_sent():
    scope = TimeoutScope(HttpTimeouts(connect=5, read=30), deadline=time.monotonic() - 1)
    try:
        scope.for_request({})
    except PushAborted:
        pass
    else:
        raise AssertionError("a request after the deadline must not be sent")
    scope.deadline = time.monotonic() + 2
    timeouts = scope.for_request({"connect": None, "read": 10.0})
    assert timeouts["read"] <= 2 and timeouts["connect"] <= 2
    assert TimeoutScope(HttpTimeouts(connect=5, read=30)).for_request({"read": 10.0})["read"] == 10.0
