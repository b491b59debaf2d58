"""Two processes (``accelerate launch``, gloo on CPU): reproducible adapters, and the evaluation loss of one process.

- Same seed, same settings: two 2-process runs end with the same adapter, bit for bit, for PEFT and for loralib.
- The evaluation loss of 2 processes equals the 1-process one to float tolerance when the evaluation set does not
  fill the last batch of both processes (7 rows, 3 per device: accelerate completes the last global batch with
  copies of the first rows, which must not be counted).
"""

from __future__ import annotations

import sys

import pytest
import torch
from phi3_testing import subprocess_env
from safetensors.torch import load_file
from scale_testing import ACCELERATE_CONFIGS, accelerate_launch, cli, eval_losses, run_command, write_recipe

pytestmark = pytest.mark.slow

TRAINING = {"max_steps": 3, "save_steps": 3, "per_device_eval_batch_size": 3}
GLOBAL_BATCH = 8
LORA = {
    "peft": {"r": 8, "lora_dropout": 0.0},
    "loralib": {"backend": "loralib", "r": 8, "lora_alpha": 16, "qkv_slices": ["q", "v"]},
}


def train(workdir, name, model, data, *, processes: int, lora: dict, eval_size: int = 20):
    output = workdir / name
    recipe = write_recipe(
        workdir / f"{name}.yaml",
        model,
        data,
        output,
        training={**TRAINING, "per_device_train_batch_size": GLOBAL_BATCH // processes},
        lora=lora,
        eval_size=eval_size,
    )
    program = cli("train", str(recipe))
    if processes == 1:
        command = [sys.executable, *program]
    else:
        command = accelerate_launch(ACCELERATE_CONFIGS / "ddp.yaml", "--num_processes", str(processes), program=program)
    env = subprocess_env(PHI3_LORA_HUB_CACHE=str(workdir / f"{name}-cache"))
    run_command(command, env=env).check()
    return output / "adapter"


@pytest.mark.parametrize("backend", sorted(LORA))
def test_two_process_runs_with_the_same_seed_end_with_the_same_adapter(
    backend, tmp_path, untrained_tiny_model, chat_jsonl
):
    if backend == "loralib":
        pytest.importorskip("loralib")
    adapters = [
        train(tmp_path, f"run{index}", untrained_tiny_model, chat_jsonl, processes=2, lora=LORA[backend])
        for index in (1, 2)
    ]
    first, second = (load_file(str(adapter / "adapter_model.safetensors")) for adapter in adapters)
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_two_processes_give_the_one_process_evaluation_loss_when_the_last_batch_is_short(
    tmp_path, untrained_tiny_model, chat_jsonl
):
    one, two = (
        eval_losses(
            train(tmp_path, f"p{n}", untrained_tiny_model, chat_jsonl, processes=n, lora=LORA["peft"], eval_size=7)
        )
        for n in (1, 2)
    )
    assert sorted(one) == sorted(two) == [3]
    assert two[3] == pytest.approx(one[3], rel=1e-6, abs=1e-6)
