"""Crash safety of training (issue 9, item 2): SIGKILL anywhere, resume, end with the uninterrupted run's adapter.

Each slow test is a chain of real training runs (``adv_crash_child.py``: the tiny Phi-3, 8 steps, a checkpoint
every 2 with evaluation and sample answers, pushes to the local Hub) in which every run but the last is killed with
SIGKILL, at points chosen on purpose (halfway through writing a checkpoint file, in the middle of a training step,
while staging a checkpoint for the Hub, while the Hub stalls a commit that already landed) and at a random time
drawn from a seeded RNG. The next run resumes, from the local checkpoints or from the Hub, and must start from the
newest checkpoint that was complete when the previous run died; the last run must produce an adapter bit-identical
to an uninterrupted run's, and the Hub's ``main`` must hold exactly that adapter.

The fast tests pin the two product bugs the chains found: a ``trainer_state.json`` cut short by a kill (or a full
disk) made the checkpoint look complete, and a ``sample_generations.json`` cut short made resuming crash.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import random
import time
from pathlib import Path

import pytest
from adv_crash_testing import SEED, ChildRun, Tally, assert_same_adapter, start_child
from huggingface_hub import HfApi

from phi3_lora_hub.hub.resume import newest_complete_checkpoint
from tests.publish.helpers import assert_hub_holds

STEP_SLEEP = 0.35
"""Seconds each step of a randomly killed run sleeps (changes no number), so a random time lands mid-run."""
MAX_STEPS = 8


def kill_at_random_time(run: ChildRun, rng: random.Random) -> str:
    """SIGKILL ``run`` at a time drawn from ``rng`` within the steps it has left; return where it died."""
    run.wait_until(lambda: run.start_step is not None, "training start")
    start = run.start_step or 0
    delay = rng.uniform(0.05, 0.9) * (MAX_STEPS - start) * STEP_SLEEP
    time.sleep(delay)
    assert run.process.poll() is None, f"{run.name} finished before its random kill: {run.explain()}"
    run.kill()
    assert run.process.returncode == -9, run.explain()
    return f"random time {delay:.2f} s after training (re)started at step {start}, checkpoints saved: {run.saved_steps}"


def write_kill(step: int, name: str) -> dict:
    return {"at": "write", "step": step, "name": name}


def _parses(state: Path) -> bool:
    """Whether a ``trainer_state.json`` is whole (the oracle for a random kill during a save)."""
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    return True


def newest_marked_step(api: HfApi, repo_id: str) -> int:
    """The newest ``step-N`` branch holding a completion marker (0 if none): what a Hub resume must start from.

    Markers are committed last, and a dead run writes nothing more, so after a kill this is an exact oracle.
    """
    steps = [
        int(ref.name.removeprefix("step-"))
        for ref in api.list_repo_refs(repo_id).branches
        if ref.name.startswith("step-") and api.file_exists(repo_id, "checkpoint/COMPLETE.json", revision=ref.name)
    ]
    return max(steps, default=0)


@pytest.mark.slow
def test_adv_crash_local_resume_survives_kills_mid_write_mid_step_and_at_random(
    hub, hub_repo_id, small_base, adv_crash_data, adv_crash_env, adv_crash_reference, tmp_path
):
    """Five kills in one output folder, each followed by ``train(resume_from_checkpoint=True)``.

    Proves: a checkpoint whose ``optimizer.pt`` or ``trainer_state.json`` was cut short is never chosen (the run
    restarts from the one before); one whose ``sample_generations.json`` was cut short (its training state is
    complete) is resumed without crashing; a kill mid-step loses only that step; the final adapter is bit-identical
    to the uninterrupted run's; the Hub (pushed to by every run) ends with exactly that adapter on ``main``.
    """
    output = tmp_path / "run"
    rng = random.Random(SEED)
    tally = Tally("kills survived, local resume")
    plan: list[tuple[str, dict | None, int]] = [
        # (where the run dies, kill spec, the step the next run must resume from)
        ("halfway through writing checkpoint-4/optimizer.pt", write_kill(4, "optimizer.pt"), 2),
        ("halfway through writing checkpoint-4/trainer_state.json", write_kill(4, "trainer_state.json"), 2),
        ("halfway through writing checkpoint-4/sample_generations.json", write_kill(4, "sample_generations.json"), 4),
        ("in training step 5, after the optimizer step", {"at": "optimizer_step", "step": 5}, 4),
        ("random", None, -1),
    ]
    resume, expected_start = "none", 0
    for index, (where, kill, next_start) in enumerate(plan):
        run = start_child(
            f"run {index}",
            output,
            base=small_base,
            data=adv_crash_data,
            env=adv_crash_env,
            repo_id=hub_repo_id,
            resume=resume,
            kill=kill,
            step_sleep=STEP_SLEEP if kill is None else 0.0,
        )
        if kill is None:
            where = kill_at_random_time(run, rng)
        else:
            assert run.wait() == -9, f"{where}: the planned kill did not happen; {run.explain()}"
        assert run.start_step == expected_start, f"{run.name} resumed from the wrong checkpoint; {run.explain()}"
        if kill is None:  # the newest save that finished; or one more, killed after trainer_state.json was written
            saved = max(run.saved_steps, default=expected_start)
            state = output / f"checkpoint-{saved + 2}" / "trainer_state.json"
            next_start = saved + 2 if _parses(state) else saved
        tally.add(f"{where} -> the next run resumes from step {next_start}")
        resume, expected_start = "local", next_start

    final = start_child(
        "final", output, base=small_base, data=adv_crash_data, env=adv_crash_env, repo_id=hub_repo_id, resume=resume
    )
    assert final.wait() == 0, final.explain()
    assert final.start_step == expected_start, final.explain()
    assert json.loads(final.stdout.strip().splitlines()[-1]) == {"global_step": MAX_STEPS, "hub_ok": True}
    assert_same_adapter(adv_crash_reference, output / "adapter")
    assert_hub_holds(HfApi(), hub_repo_id, "main", output / "adapter", tmp_path / "download")
    tally.report()


# -- fast regression tests of the bugs the chains found ------------------------------------------------------------


def _checkpoint(output: Path, step: int, state: str) -> Path:
    """A checkpoint folder holding every file a resumable checkpoint needs, with ``state`` as its trainer state."""
    folder = output / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text(state)
    return folder


def test_adv_crash_a_cut_or_foreign_trainer_state_is_never_chosen_for_local_resume(tmp_path, caplog):
    """A kill (or a full disk) while Trainer writes ``trainer_state.json``, its last file, leaves every file in
    place but that one cut short: such a checkpoint, and one whose state names another step, is skipped, so
    ``resume_from_checkpoint=True`` starts from the newest checkpoint that is really whole."""
    from phi3_lora_hub.errors import ConfigError
    from phi3_lora_hub.training.recipe_hub import resume_point

    whole = json.dumps({"global_step": 2, "log_history": [{"loss": 1.0, "step": 1}]}, indent=2)
    _checkpoint(tmp_path, 2, whole)
    _checkpoint(tmp_path, 4, whole.replace("2", "4")[: len(whole) // 2])  # cut halfway
    _checkpoint(tmp_path, 6, "")  # opened for writing, nothing written yet
    _checkpoint(tmp_path, 8, whole)  # step 2's state under step 8's name
    caplog.set_level(logging.WARNING)

    assert resume_point(tmp_path, None, True, False) == str(tmp_path / "checkpoint-2")
    skipped = [r.getMessage() for r in caplog.records if "Skipping incomplete" in r.getMessage()]
    assert [m.split("checkpoint-")[1][:1] for m in skipped] == ["8", "6", "4"]
    assert "it is for step 2" in skipped[0] and "unreadable" in skipped[1] and "unreadable" in skipped[2]

    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text(whole[:10])
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        resume_point(tmp_path, None, True, False)


def test_adv_crash_sample_answers_are_written_atomically_and_a_cut_file_does_not_stop_a_resume(
    tmp_path, monkeypatch, caplog
):
    """``sample_generations.json`` is written after ``trainer_state.json``, so a kill while writing it left a
    complete checkpoint whose resume crashed on the half file (``JSONDecodeError``). Now the file is replaced
    atomically (a crash before the rename leaves the previous file whole), and a resume ignores, with a warning,
    a file that cannot be read (one written by an older version, say) instead of crashing."""
    from types import SimpleNamespace

    from phi3_lora_hub.callbacks.sample_generations import SampleGenerationsCallback
    from phi3_lora_hub.decoding import chat_generation_config
    from phi3_lora_hub.evaluation.samples import SampleAnswer, SampleGenerations, SamplePrompt, StepSamples
    from phi3_lora_hub.run_file_names import SAMPLES_FILE

    prompts = [SamplePrompt([{"role": "user", "content": "Where is north?"}])]
    history = SampleGenerations(
        prompts, chat_generation_config(), "user", [StepSamples(0, 0.0, [SampleAnswer("Up.", "stop", 2)])]
    )
    checkpoint = tmp_path / "checkpoint-4"
    history.write(checkpoint)
    before = (checkpoint / SAMPLES_FILE).read_bytes()

    def crash(*args, **kwargs):
        raise OSError("killed before the rename")

    step_2 = StepSamples(2, 1.0, history.steps[0].answers)
    longer = SampleGenerations(prompts, chat_generation_config(), "user", [*history.steps, step_2])
    monkeypatch.setattr(os, "replace", crash)  # the rename that publishes the finished file
    with pytest.raises(OSError):
        longer.write(checkpoint)
    monkeypatch.undo()
    assert (checkpoint / SAMPLES_FILE).read_bytes() == before  # never a half-written file

    (checkpoint / SAMPLES_FILE).write_bytes(before[: len(before) // 2])  # as an older version could leave it
    callback = SampleGenerationsCallback(prompts, chat_generation_config(), source="user")
    caplog.set_level(logging.WARNING)
    args, state = SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=4, is_world_process_zero=True)
    callback.on_train_begin(args, state, SimpleNamespace())  # no model: nothing is generated here
    assert callback.samples.steps == []
    assert any("cannot be read" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_adv_crash_hub_resume_survives_kills_during_pushes_staging_and_at_random(
    hub, hub_repo_id, small_base, adv_crash_data, adv_crash_env, adv_crash_reference, tmp_path
):
    """Three kills, each followed by ``train(resume_from_hub=True)`` on a fresh machine (an empty output folder).

    Proves: a kill after the Hub applied a checkpoint's resumable-state commit but before its completion marker
    (the Hub stalls the answer) leaves a branch that resume refuses, with a log line, for the previous complete
    one; a kill while staging a checkpoint and one at a random time each resume from the newest branch that holds
    a marker when the run died; the last run's adapter is bit-identical to the uninterrupted run's and ``main``
    holds exactly it (sha256 of every file).
    """
    api = HfApi()
    rng = random.Random(SEED + 1)
    tally = Tally("kills survived, resume from the Hub")

    def run(index: int, **settings) -> ChildRun:
        return start_child(
            f"machine {index}",
            tmp_path / f"machine-{index}",
            base=small_base,
            data=adv_crash_data,
            env=adv_crash_env,
            repo_id=hub_repo_id,
            resume="none" if index == 0 else "hub",
            **settings,
        )

    # 1. Checkpoint 4's resumable state lands on branch step-4, the answer is stalled: killed before the marker.
    stall = hub.faults.delay(method="POST", path=r"/commit/step-4$", seconds=45, stage="after", count=1)
    first = run(0)
    first.wait_until(
        lambda: stall.hits == 1 and api.file_exists(hub_repo_id, "checkpoint/optimizer.pt", revision="step-4"),
        "the resumable state of step 4 on the Hub",
    )
    first.kill()
    hub.faults.clear()
    assert not api.file_exists(hub_repo_id, "checkpoint/COMPLETE.json", revision="step-4")
    tally.add("while the Hub stalled the answer to step 4's resumable-state commit (applied, no marker yet)")

    # 2. Resumes from step 2, not from the unmarked step 4; killed while staging checkpoint 6 for the Hub.
    second = run(1, kill={"at": "stage", "step": 6})
    assert second.wait() == -9, second.explain()
    assert second.start_step == 2, second.explain()
    assert "step-4 is not a complete checkpoint (no completion marker" in second.stderr
    tally.add("while staging checkpoint 6 for the Hub (first file linked)")

    # 3. Resumes from the newest marked branch; killed at a random time (steps, saves, pushes in flight).
    expected = newest_marked_step(api, hub_repo_id)
    third = run(2, step_sleep=STEP_SLEEP)
    tally.add(kill_at_random_time(third, rng))
    assert third.start_step == expected, third.explain()

    # 4. Resumes from the newest marked branch and finishes.
    expected = newest_marked_step(api, hub_repo_id)
    last = run(3)
    assert last.wait() == 0, last.explain()
    assert last.start_step == expected, last.explain()
    assert json.loads(last.stdout.strip().splitlines()[-1]) == {"global_step": MAX_STEPS, "hub_ok": True}
    adapter = tmp_path / "machine-3" / "adapter"
    assert_same_adapter(adv_crash_reference, adapter)
    assert_hub_holds(api, hub_repo_id, "main", adapter, tmp_path / "download")
    tally.report()


def test_adv_crash_disk_full_while_writing_trainer_state_stops_training_and_resume_takes_the_previous_checkpoint(
    small_base, adv_crash_data, tmp_path, monkeypatch
):
    """Extends C11 (full disk on ``optimizer.pt``) to the one file that made a cut checkpoint look complete: the
    disk fills up halfway through ``checkpoint-4/trainer_state.json``. Training stops with the ``ENOSPC`` error
    naming the file; ``checkpoint-2`` is untouched; resuming takes it and finishes the run."""
    from transformers import TrainerState

    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.file_digest import sha256_of

    real_save = TrainerState.save_to_json

    def disk_full_at_step_4(self, json_path: str) -> None:
        if not json_path.endswith(str(Path("checkpoint-4") / "trainer_state.json")):
            return real_save(self, json_path)
        Path(json_path).write_text(json.dumps(dataclasses.asdict(self), indent=2)[:100])  # what fit on the disk
        raise OSError(errno.ENOSPC, "No space left on device", json_path)

    def recipe() -> Phi3LoraRecipe:
        training = {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4, "disable_tqdm": True}
        return Phi3LoraRecipe(str(small_base), str(adv_crash_data), output_dir=str(tmp_path), training=training)

    monkeypatch.setattr(TrainerState, "save_to_json", disk_full_at_step_4)
    with pytest.raises(OSError, match="No space left on device") as error:
        recipe().train()
    assert error.value.errno == errno.ENOSPC and "checkpoint-4" in str(error.value)
    before = {path.name: sha256_of(path) for path in (tmp_path / "checkpoint-2").iterdir()}

    monkeypatch.setattr(TrainerState, "save_to_json", real_save)
    assert newest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert {path.name: sha256_of(path) for path in (tmp_path / "checkpoint-2").iterdir()} == before
    assert recipe().train(resume_from_checkpoint=True).global_step == 4
