"""Resuming: a full disk during a save (C11), a partial checkpoint on the Hub (C13), SIGKILL then resume (C12)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.torch import load_file

from phi3_lora_hub.hub.marker import CompletionMarker
from phi3_lora_hub.hub.resume import newest_complete_checkpoint, resume_checkpoint_from_hub
from tests.hub.helpers import child_env
from tests.publish.helpers import assert_hub_holds


def test_c11_a_full_disk_during_a_save_never_pushes_the_partial_checkpoint(
    hub, make_recipe, push_callback, hub_repo_id, monkeypatch, tmp_path
):
    real_save = torch.save

    def disk_full_at_step_4(obj, target, *args, **kwargs):
        if str(target).endswith(os.path.join("checkpoint-4", "optimizer.pt")):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_step_4)
    recipe = make_recipe(push_callback(push_resumable_state=True))
    with pytest.raises(OSError) as error:
        recipe.train()  # policy: a save that fails stops training with the error (it is not hidden)
    assert error.value.errno == errno.ENOSPC
    output = Path(recipe.config.output_dir)
    partial = output / "checkpoint-4"
    assert (partial / "adapter_model.safetensors").is_file() and not (partial / "trainer_state.json").exists()

    # What was saved before still reached the Hub (flushed although training failed); the partial one never did.
    report = recipe.hub_callback.report
    assert [p.label for p in report.pushes] == ["step 2"] and report.ok
    api = HfApi()
    assert {ref.name for ref in api.list_repo_refs(hub_repo_id).branches} == {"main", "step-2"}
    assert_hub_holds(api, hub_repo_id, "main", output / "checkpoint-2", tmp_path / "dl")

    # Resuming skips the partial checkpoint-4 (Trainer's get_last_checkpoint would pick it and fail).
    monkeypatch.setattr(torch, "save", real_save)
    assert newest_complete_checkpoint(output) == output / "checkpoint-2"
    result = make_recipe(push_callback(push_resumable_state=True)).train(resume_from_checkpoint=True)
    assert result.global_step == 6 and result.hub.ok
    assert [p.label for p in result.hub.pushed] == ["step 4", "step 6", "final adapter (step 6)"]
    assert_hub_holds(api, hub_repo_id, "main", output / "adapter", tmp_path / "dl2")


def test_c13_resume_refuses_hub_checkpoints_without_a_valid_marker(
    hub, make_recipe, push_callback, hub_repo_id, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    assert make_recipe(push_callback(push_resumable_state=True)).train().hub.ok
    api = HfApi()
    marker = CompletionMarker.from_json(
        Path(api.hf_hub_download(hub_repo_id, "checkpoint/COMPLETE.json", revision="step-6")).read_text()
    )
    # step-8: the files were committed, the marker never was (a kill between the two commits).
    api.create_branch(hub_repo_id, branch="step-8", revision="step-6")
    api.delete_file("checkpoint/COMPLETE.json", hub_repo_id, revision="step-8")
    # step-10: a marker for step 10, but a file changed after it was written.
    api.create_branch(hub_repo_id, branch="step-10", revision="step-6")
    step_10 = CompletionMarker(step=10, files=marker.files)
    api.create_commit(
        hub_repo_id,
        [
            CommitOperationAdd("checkpoint/COMPLETE.json", step_10.to_json().encode()),
            CommitOperationAdd("checkpoint/optimizer.pt", b"not the optimizer state the marker lists"),
        ],
        commit_message="tampered",
        revision="step-10",
    )
    # step-12: a complete checkpoint copied under another step's name.
    api.create_branch(hub_repo_id, branch="step-12", revision="step-6")

    found = resume_checkpoint_from_hub(hub_repo_id, tmp_path / "resume")
    assert found is not None and (found.step, found.branch) == (6, "step-6")
    assert json.loads((found.path / "trainer_state.json").read_text())["global_step"] == 6
    refused = [r.getMessage() for r in caplog.records if "is not a complete checkpoint" in r.getMessage()]
    assert len(refused) == 3
    assert "step-12" in refused[0] and "its marker is for step 6" in refused[0]
    assert "step-10" in refused[1] and "optimizer.pt has another sha256" in refused[1]
    assert "step-8" in refused[2] and "no completion marker" in refused[2]
    assert not (tmp_path / "resume" / "step-8").exists()  # refused downloads are removed


def test_resume_from_hub_starts_from_step_0_when_nothing_was_pushed(hub, make_recipe, hub_repo_id, caplog):
    result = make_recipe(hub_model_id=hub_repo_id, hub_push_resumable_state=True).train(resume_from_hub=True)
    assert result.global_step == 6 and result.hub.ok
    assert any("training starts at step 0" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_c12_sigkill_then_resume_from_the_hub_gives_bit_identical_weights(
    hub, small_base, chat_file, hub_repo_id, tmp_path
):
    child = Path(__file__).with_name("kill_resume_child.py")
    env = child_env()

    def run(mode: str, output: Path, **popen) -> subprocess.Popen:
        command = [sys.executable, str(child), mode, str(small_base), str(chat_file), str(output), hub_repo_id]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)

    killed = run("slow", tmp_path / "killed")
    api = HfApi()
    deadline = time.monotonic() + 300
    complete: list[str] = []
    while not complete and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.2)
        if api.repo_exists(hub_repo_id):
            branches = [ref.name for ref in api.list_repo_refs(hub_repo_id).branches if ref.name != "main"]
            complete = [b for b in branches if api.file_exists(hub_repo_id, "checkpoint/COMPLETE.json", revision=b)]
    assert complete, f"no complete checkpoint was pushed: {killed.communicate()[1][-3000:]}"
    time.sleep(0.7)  # somewhere in the middle of the next steps, saves or pushes
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert killed.returncode == -signal.SIGKILL

    resumed, reference = run("resume", tmp_path / "resumed"), run("reference", tmp_path / "reference")
    for process in (resumed, reference):
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["global_step"] == 6
    expected = load_file(tmp_path / "reference" / "adapter" / "adapter_model.safetensors")
    actual = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert (tmp_path / "resumed" / "_hubresume").is_dir()  # it really started from a Hub checkpoint
