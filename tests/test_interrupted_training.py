"""Ctrl-C (SIGINT) during ``phi3-lora-hub train``: one clear line with the complete checkpoint and the resume command.

A CLI training run in a child process is interrupted once it has written a checkpoint; its output must say, on a
line of its own (not glued to the progress bar), which checkpoint is complete and the exact command that resumes
it; that command then says which checkpoint it picked and finishes the run.
"""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from phi3_testing import ROOT, subprocess_env
from transformers import TrainerCallback

from phi3_lora_hub.data.sample import write_sample_dataset
from phi3_lora_hub.training.interrupt import InterruptedRun, TrainingInterrupted


def write_recipe(path: Path, base: Path, data: Path, output: Path) -> Path:
    settings = {
        "model": str(base),
        "dataset": str(data),
        "output_dir": str(output),
        "training": {"max_steps": 100000, "save_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 2},
        "evaluation": {"num_samples": 0},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run wrote no complete checkpoint in time"
        time.sleep(0.2)


@pytest.mark.slow
def test_ctrl_c_names_the_complete_checkpoint_and_the_command_that_resumes_it(small_base, tmp_path):
    data = write_sample_dataset(tmp_path / "chats.jsonl", n=40)
    output = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", small_base, data, output)
    command = [sys.executable, "-m", "phi3_lora_hub", "train", str(recipe), "--set", "lora.r=4"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: (output / "checkpoint-4" / "trainer_state.json").is_file(), process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-3000:]
    lines = stderr.split("\n")
    [stopped] = [line for line in lines if line.startswith("Training interrupted at step ")]
    checkpoint = Path(stopped.split("The newest complete checkpoint is ")[1].split(" (step")[0])
    step = int(checkpoint.name.split("-")[1])
    assert checkpoint.parent == output and step >= 4 and f"(step {step})." in stopped
    [advice] = [line for line in lines if line.startswith(f"Resume from {checkpoint.name} with: ")]
    resume = shlex.split(advice.split(" with: ", 1)[1])
    assert resume == ["phi3-lora-hub", "train", str(recipe), "--set", "lora.r=4", "--resume"]

    # The printed command (run as a module here, with fewer steps so that it ends) picks that checkpoint.
    finish = [sys.executable, "-m", "phi3_lora_hub", *resume[1:], "--set", f"training.max_steps={step + 1}"]
    done = subprocess.run(finish, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Resuming from {checkpoint} (step {step}), the newest complete checkpoint in {output}." in done.stderr


def test_the_interruption_of_a_run_without_a_checkpoint_says_a_new_run_starts_at_step_0(tmp_path):
    from phi3_lora_hub.cli.commands.train import resume_advice
    from phi3_lora_hub.cli.main import build_parser

    run = InterruptedRun(tmp_path, 1, None)
    interrupted = TrainingInterrupted(run)
    assert isinstance(interrupted, KeyboardInterrupt)
    assert (
        str(interrupted)
        == f"Training interrupted at step 1. No checkpoint in {tmp_path} is complete yet: a new run starts at step 0."
    )
    args = build_parser().parse_args(["train", "my recipe.yaml", "--set", "training.max_steps=5"])
    assert (
        resume_advice(args, run)
        == "Start it again with: phi3-lora-hub train 'my recipe.yaml' --set training.max_steps=5"
    )


class InterruptAt(TrainerCallback):
    """Raises ``KeyboardInterrupt`` (what Ctrl-C raises) at the end of optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt
        return control


def test_an_interrupted_python_run_names_its_complete_checkpoint_and_resumes_from_it(small_base, tmp_path, caplog):
    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.data.sample import sample_conversations

    def recipe(*callbacks):
        return Phi3LoraRecipe(
            str(small_base),
            sample_conversations(24),
            output_dir=str(tmp_path),
            training={"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4, "disable_tqdm": True},
            evaluation={"num_samples": 0},
            callbacks=list(callbacks),
        )

    with pytest.raises(TrainingInterrupted) as raised:
        recipe(InterruptAt(3)).train()
    assert raised.value.run == InterruptedRun(tmp_path, 3, tmp_path / "checkpoint-2")
    assert str(raised.value) == (
        f"Training interrupted at step 3. The newest complete checkpoint is {tmp_path / 'checkpoint-2'} (step 2)."
        " Resume it with train(resume_from_checkpoint=True)."
    )
    with caplog.at_level(logging.INFO, logger="phi3_lora_hub"):
        result = recipe().train(resume_from_checkpoint=True)
    assert result.global_step == 4
    expected = f"Resuming from {tmp_path / 'checkpoint-2'} (step 2), the newest complete checkpoint in {tmp_path}."
    assert [r.getMessage() for r in caplog.records].count(expected) == 1
