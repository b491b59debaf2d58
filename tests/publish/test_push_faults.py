"""Fault cases of hub-reliability.md §9 against the local Hub: training always finishes, ``main`` ends up equal to
the newest local checkpoint once the Hub is reachable, and the report and the logs say what failed.

C1 one commit fails, C2 every commit fails, C4 stalled commits, C5 server down and back, C6 pushes slower than
saves, C7 checkpoint rotation. Tokens (C9, C10) are in test_push_tokens.py, resuming (C11-C13) in
test_resume_from_hub.py, revision names (C19) in test_branch_names.py and test_push_roundtrip.py.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from transformers import TrainerCallback

from phi3_lora_hub.hub.adapter_push import push_adapter
from phi3_lora_hub.hub.errors import HubPushError
from phi3_lora_hub.hub.marker import CompletionMarker
from phi3_lora_hub.hub.publisher import HubPublisher
from phi3_lora_hub.hub.resume import resume_checkpoint_from_hub
from phi3_lora_hub.hub.settings import HubPushSettings
from phi3_lora_hub.hub.timeouts import HttpTimeouts
from tests.publish.helpers import FAST_RETRY, AtStep, assert_hub_holds, commit_titles, push_threads, when_settled


def hub_log_lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "phi3_lora_hub.hub" and r.levelno == level]


def push_groups(report) -> set[str]:
    """How the log names each push: the final adapter takes a waiting last checkpoint of its step along."""
    merged = [push for push in report.pushes if push.with_final]
    return {
        " + ".join([push.label, *(m.label for m in merged)]) if push.final else push.label
        for push in report.pushes
        if push.status != "skipped" and not push.with_final
    }


def commit_requests(hub, repo_id: str) -> list:
    return [r for r in hub.requests if "/commit/" in r.path and repo_id in r.path]


# -- C1: one commit fails ----------------------------------------------------------------------------------------


def test_c1_one_failed_commit_is_logged_once_and_retried(
    hub, hub_mode, make_recipe, push_callback, hub_repo_id, tmp_path, hub_logs
):
    inject = AtStep(3, lambda: hub.faults.fail("commit", status=500, count=1))
    recipe = make_recipe(push_callback(), extra_callbacks=[inject])
    report = recipe.train().hub

    assert report.ok, report.summary()
    statuses = [r.status for r in commit_requests(hub, hub_repo_id)]
    assert statuses.count(500) == 1 and statuses[-1] == 200
    [warning] = [line for line in hub_log_lines(hub_logs, logging.WARNING) if "HTTP 500" in line]
    assert "retrying" in warning and "request id" in warning
    assert not hub_log_lines(hub_logs, logging.ERROR)
    output, api = Path(recipe.config.output_dir), HfApi()
    assert_hub_holds(api, hub_repo_id, "main", output / "adapter", tmp_path / "dl")
    titles = commit_titles(api, hub_repo_id)
    assert len(titles) == len(set(titles)) == 5  # 3 checkpoints + final + initial: the retry added no duplicate


# -- C2: every commit fails --------------------------------------------------------------------------------------


def test_c2_every_commit_failing_is_reported_and_pushed_later(
    hub, make_recipe, push_callback, hub_repo_id, tmp_path, hub_logs
):
    hub.faults.fail("commit", status=500, count=None)
    recipe = make_recipe(push_callback(on_failure="raise"))
    started = time.monotonic()
    with pytest.raises(HubPushError) as raised:
        recipe.train()
    assert time.monotonic() - started < 60
    report = raised.value.report
    output = Path(recipe.config.output_dir)
    assert (output / "adapter" / "adapter_model.safetensors").is_file()  # training finished and saved
    failed = report.failed
    assert not report.ok and report.pushed == []
    assert {p.status for p in report.pushes} <= {"failed", "skipped"}  # skipped: replaced while step 2 retried
    assert [p.label for p in failed][-2:] == ["step 6", "final adapter (step 6)"]
    assert all("HTTP 500" in p.error for p in failed)
    errors = [line for line in hub_log_lines(hub_logs, logging.ERROR) if "NOT pushed" in line]
    assert all("HTTP 500" in line for line in errors)  # logged with the cause...
    # ...once per push (the last checkpoint may share one push, and one line, with the final adapter)
    assert sorted(line.split(" NOT pushed")[0] for line in errors) == sorted(f"Hub: {g}" for g in push_groups(report))
    assert "The Hub does not hold the newest checkpoint" in str(raised.value)
    assert HfApi().list_repo_commits(hub_repo_id)[0].title == "initial commit"
    # Only the newest staging is kept, and the report says how to push it once the Hub works again.
    newest = report.newest
    assert newest.kept_at is not None and newest.kept_at.is_dir()
    assert [p.kept_at for p in report.pushes[:-1]] == [None, None, None]
    assert f"phi3-lora-hub push {newest.kept_at / 'adapter'} --repo-id {hub_repo_id}" in report.summary()

    hub.faults.clear()
    pushed = push_adapter(newest.kept_at / "adapter", hub_repo_id, retry=FAST_RETRY)
    assert pushed.commit == HfApi().repo_info(hub_repo_id).sha
    assert_hub_holds(HfApi(), hub_repo_id, "main", output / "adapter", tmp_path / "dl")


# -- C4: stalled commits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["before", "after"])
def test_c4_a_stalled_commit_times_out_and_its_replay_creates_no_duplicate(
    hub, hub_mode, hub_repo_id, trained_run, tmp_path, stage
):
    # "before": the server applies the stalled request late (its parent is stale by then: 412, refused);
    # "after": the commit landed but the answer never came (the replay finds nothing to commit).
    rule = hub.faults.delay("commit", seconds=2.5, stage=stage)
    settings = HubPushSettings(hub_repo_id, retry=FAST_RETRY, timeouts=HttpTimeouts(connect=5, read=1.0))
    publisher = HubPublisher(settings)
    publisher.start(tmp_path / "out")
    started = time.monotonic()
    publisher.submit_checkpoint(trained_run / "checkpoint-2", 2)
    report = publisher.finish(30)
    assert report.ok, report.summary()
    time.sleep(max(0.0, started + 3.5 - time.monotonic()))  # the server is done with the stalled request
    assert rule.hits == 1
    assert commit_titles(HfApi(), hub_repo_id) == ["Checkpoint step 2", "initial commit"]
    answered = [r.status for r in commit_requests(hub, hub_repo_id)]
    assert answered.count(412) == (1 if stage == "before" else 0)


def test_c4_a_server_that_never_answers_cannot_hold_training_past_the_deadline(
    hub, make_recipe, push_callback, hub_logs
):
    hub.faults.delay("commit", seconds=20, count=None)
    ended: list[float] = []

    class TrainEnd(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            ended.append(time.monotonic())

    callback = push_callback(request_timeout=1.0, flush_timeout=4.0)
    recipe = make_recipe(callback, extra_callbacks=[TrainEnd()])
    try:
        result = recipe.train()
        returned = time.monotonic()
    finally:
        hub.restart()  # cut the stalled server threads short
    assert returned - ended[0] < 4.0 + 3.0  # the flush deadline, plus saving the final adapter
    assert not result.hub.ok and result.hub.pushed == []
    assert {p.status for p in result.hub.pushes} <= {"failed", "unfinished", "skipped"}
    assert result.hub.newest.status in ("failed", "unfinished")
    assert not push_threads()  # the worker thread is gone
    assert (Path(recipe.config.output_dir) / "adapter" / "adapter_model.safetensors").is_file()


# -- C5: server down and back ------------------------------------------------------------------------------------


def test_c5_server_down_mid_training_then_back(hub, make_recipe, push_callback, hub_repo_id, tmp_path, hub_logs):
    callback = push_callback(retry=FAST_RETRY)
    # Down after the step-2 push, for the whole step-4 push (all its retries), back before the step-6 save.
    recipe = make_recipe(
        callback,
        extra_callbacks=[
            AtStep(3, when_settled(callback, hub.stop)),
            AtStep(5, when_settled(callback, hub.start)),
        ],
    )
    report = recipe.train().hub
    statuses = {p.label: p.status for p in report.pushes}
    assert statuses == {"step 2": "pushed", "step 4": "failed", "step 6": "pushed", "final adapter (step 6)": "pushed"}
    assert "cannot connect" in report.pushes[1].error
    assert_hub_holds(HfApi(), hub_repo_id, "main", Path(recipe.config.output_dir) / "adapter", tmp_path / "dl")
    assert "step-4" not in {ref.name for ref in HfApi().list_repo_refs(hub_repo_id).branches}
    assert any(
        "Hub: step 4 NOT pushed: commit to main failed 3 times, last: cannot connect" in line
        for line in hub_log_lines(hub_logs, logging.ERROR)
    )


def test_hub_down_at_start_is_checked_and_warned_about_once_then_pushes_catch_up(
    hub, make_recipe, push_callback, hub_repo_id, hub_logs
):
    """The recipe, the callback's init and its train-begin each ask for the startup check; one check is enough."""
    callback = push_callback(retry=FAST_RETRY)
    recipe = make_recipe(callback, extra_callbacks=[AtStep(1, hub.start)])
    hub.stop()
    report = recipe.train().hub
    warnings = [line for line in hub_log_lines(hub_logs, logging.WARNING) if line.startswith("Cannot reach the Hub")]
    assert len(warnings) == 1 and "Training starts anyway" in warnings[0]
    assert report.ok, report.summary()
    assert [p.label for p in report.pushed][-1].startswith("final adapter")


# -- C6: pushes slower than saves --------------------------------------------------------------------------------


def test_c6_slow_pushes_coalesce_and_each_commit_holds_its_own_step(
    hub, hub_mode, make_recipe, push_callback, hub_repo_id, tmp_path
):
    hub.faults.delay("preupload", seconds=1.5, count=None)
    recipe = make_recipe(push_callback(), training={"max_steps": 8, "save_steps": 1})
    report = recipe.train().hub
    assert report.ok, report.summary()
    assert report.skipped, "pushes were slower than saves, so some waiting checkpoints must have been replaced"
    pushed_steps = [p.step for p in report.pushed if not p.final]
    assert pushed_steps[-1] == 8 and report.newest.final and report.newest.status == "pushed"

    api = HfApi()
    for commit in api.list_repo_commits(hub_repo_id):
        if commit.title.startswith("Checkpoint step "):
            state = api.hf_hub_download(
                hub_repo_id, "trainer_state.json", revision=commit.commit_id, cache_dir=tmp_path
            )
            assert json.loads(Path(state).read_text())["global_step"] == int(commit.title.split()[-1])
    branches = {ref.name for ref in api.list_repo_refs(hub_repo_id).branches}
    assert branches == {"main", *(f"step-{step}" for step in pushed_steps)}
    assert_hub_holds(api, hub_repo_id, "main", Path(recipe.config.output_dir) / "adapter", tmp_path / "dl")


# -- C7: checkpoint rotation -------------------------------------------------------------------------------------


def test_c7_rotation_cannot_race_the_pushes(hub, make_recipe, push_callback, hub_repo_id, tmp_path):
    hub.faults.delay("preupload", seconds=1.0, count=None)
    recipe = make_recipe(push_callback(push_resumable_state=True), training={"save_total_limit": 1})
    report = recipe.train().hub
    output = Path(recipe.config.output_dir)
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-6"]  # rotated while pushes waited
    assert report.ok, report.summary()
    newest = [p for p in report.pushed if not p.final][-1]
    assert newest.step == 6 and newest.resumable
    found = resume_checkpoint_from_hub(hub_repo_id, tmp_path / "resume")
    assert found is not None and found.step == 6
    marker = CompletionMarker.from_json((found.path / "COMPLETE.json").read_text())
    assert marker.problems(found.path) == [] and marker.problems(output / "checkpoint-6") == []
    assert_hub_holds(HfApi(), hub_repo_id, "main", output / "adapter", tmp_path / "dl")
