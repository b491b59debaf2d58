"""The Python API shows the readable progress the command line shows, through ``logging``, once, without clutter.

A script that calls ``Phi3LoraRecipe(...).train()`` and configures nothing runs in a child process whose output is
a pipe (not a terminal), pushing to the session's local Hub: its output must hold the data summary, one readable
line per training log, the push lines, the sample answers and the evaluation table; no raw Trainer dicts, no
progress-bar control characters, no FutureWarning, and no line printed twice in a row. A script that configures
logging itself gets each of those lines once, through its own handler.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
from phi3_testing import FAKE_TOKEN, ROOT, subprocess_env

SCRIPT = """
import logging
{setup}
from phi3_lora_hub import Phi3LoraRecipe
from phi3_lora_hub.data.sample import sample_conversations

Phi3LoraRecipe(
    {base!r},
    sample_conversations(40),
    output_dir={output!r},
    eval_size=6,
    hub_model_id={repo!r},
    training={{"max_steps": 4, "save_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 4}},
    evaluation={{"max_examples": 3, "max_new_tokens": 4, "num_samples": 1, "sample_max_new_tokens": 4}},
).train()
"""


def run_script(tmp_path, small_base, repo: str, setup: str = "") -> str:
    script = tmp_path / "train.py"
    output = tmp_path / "run"
    script.write_text(textwrap.dedent(SCRIPT.format(setup=setup, base=str(small_base), output=str(output), repo=repo)))
    env = subprocess_env(HF_HUB_OFFLINE="0", HF_TOKEN=FAKE_TOKEN)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def assert_readable(output: str) -> None:
    assert "\r" not in output and "\x1b" not in output  # no progress bars redrawn into a pipe
    assert "{'loss'" not in output and "{'eval_loss'" not in output  # no raw Trainer dicts
    assert "FutureWarning" not in output
    lines = [line for line in output.split("\n") if line.strip()]
    repeated = [a for a, b in itertools.pairwise(lines) if a == b]
    assert not repeated, repeated


@pytest.mark.slow
def test_a_script_sees_the_progress_the_command_line_prints(hub, hub_repo_id, small_base, tmp_path):
    output = run_script(tmp_path, small_base, hub_repo_id)
    assert_readable(output)
    assert "Training data: in-memory list (40 rows) [train]: messages format" in output
    for step in (1, 2, 3, 4):
        assert f"step {step}/4: loss " in output
    assert "step 2/4: eval loss " in output and "Sample answers at step 2:" in output
    assert output.count("Hub: pushed step 2 to main and step-2 (commit ") == 1
    assert "| Perplexity (answer tokens) ↓ |" in output  # the evaluation table


@pytest.mark.slow
def test_a_script_that_configures_logging_gets_each_line_once_through_its_handler(
    hub, hub_repo_id, small_base, tmp_path
):
    setup = 'logging.basicConfig(level=logging.INFO, format="LOG %(name)s: %(message)s")'
    output = run_script(tmp_path, small_base, hub_repo_id, setup)
    assert_readable(output)
    summary = [line for line in output.split("\n") if "Training data: " in line]
    assert summary == [line for line in summary if line.startswith("LOG phi3_lora_hub.recipe: ")] and len(summary) == 1
    assert output.count("step 3/4: loss ") == 1
