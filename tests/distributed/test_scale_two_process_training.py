"""The tiny Phi-3 trained by 2 processes (``accelerate launch --config_file examples/accelerate/ddp.yaml
--num_processes 2``, gloo on CPU) follows the same loss curve as 1 process with the same global batch.

Why the curves can be compared step by step: accelerate's training dataloader draws one seeded permutation (the same
on every process) and deals its batches of ``per_device_train_batch_size`` rows to the processes in turn, so with 8
rows per device on 1 process, or 4 per device on 2, or 2 per device with 2 accumulation steps on 2, optimizer step
``k`` sees the same 8 rows. The Trainer normalises the loss by the answer tokens of the whole global batch (gathered
across processes and accumulation steps) and DDP averages gradients, so the update is the same sum over the same
tokens. LoRA dropout is 0, the LoRA weights start from the same seed (and DDP broadcasts rank 0's anyway).

Tolerance: 1e-4 absolute per step on a loss near 7. What legitimately differs is float32 rounding: the order of
gradient sums (gloo all-reduce of partial sums vs one matmul over 8 rows) and the batch layout (4 sequences per
padding-free row instead of 8). Measured differences are one float32 ulp (4.8e-7 at 7.0); 1e-4 leaves ~200 ulp for
other CPUs' kernels, is 4900x smaller than the curve's 0.49 descent over the run, and 25x smaller than what a wrong
global batch (16) or another data order already produces at step 1 (2.6e-3 and 3.4e-3; up to 6e-2 later in the
run; benchmarks/RESULTS.md, "Scaling out").
"""

from __future__ import annotations

import math
import sys

import pytest
from phi3_testing import subprocess_env
from scale_testing import (
    ACCELERATE_CONFIGS,
    Run,
    accelerate_launch,
    cli,
    eval_losses,
    loss_curve,
    run_command,
    write_recipe,
)

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("two-process")


@pytest.fixture(scope="module")
def reference(workdir, untrained_tiny_model, chat_jsonl):
    """One process, 8 rows per step: the same CLI, started by plain ``python``."""
    output = workdir / "one-process"
    recipe = write_recipe(workdir / "one.yaml", untrained_tiny_model, chat_jsonl, output)
    run = run_command([sys.executable, *cli("train", str(recipe))]).check()
    return run, output / "adapter"


def launch_two(workdir, name, model, data, *, training) -> tuple[Run, object]:
    output = workdir / name
    recipe = write_recipe(workdir / f"{name}.yaml", model, data, output, training=training)
    command = accelerate_launch(
        ACCELERATE_CONFIGS / "ddp.yaml", "--num_processes", "2", program=cli("train", str(recipe))
    )
    # A cache of its own, so that what the two processes prepare (and read) is theirs alone.
    env = subprocess_env(PHI3_LORA_HUB_CACHE=str(workdir / f"{name}-cache"))
    return run_command(command, env=env).check(), output / "adapter"


@pytest.fixture(scope="module")
def two_processes(workdir, untrained_tiny_model, chat_jsonl):
    """Two processes, 4 rows each per step: the global batch of the reference."""
    return launch_two(
        workdir, "two-processes", untrained_tiny_model, chat_jsonl, training={"per_device_train_batch_size": 4}
    )


def assert_same_curve(adapter, reference_adapter) -> dict[int, float]:
    expected, actual = loss_curve(reference_adapter), loss_curve(adapter)
    assert sorted(actual) == sorted(expected) == list(range(1, 11))
    differences = {step: abs(actual[step] - expected[step]) for step in expected}
    assert max(differences.values()) <= TOLERANCE, differences
    assert expected[1] - expected[10] > 1000 * TOLERANCE  # the curve moves: agreeing is not trivial
    expected_eval, actual_eval = eval_losses(reference_adapter), eval_losses(adapter)
    assert sorted(actual_eval) == sorted(expected_eval) == [5, 10]
    for step, value in expected_eval.items():  # evaluation: batches dealt out, losses gathered from both processes
        assert math.isclose(actual_eval[step], value, abs_tol=TOLERANCE), (step, actual_eval[step], value)
    return differences


def test_two_processes_follow_the_one_process_loss_curve(two_processes, reference):
    run, adapter = two_processes
    assert_same_curve(adapter, reference[1])
    assert (
        "Global batch: 8 rows per optimizer step = 4 per device x 1 accumulation step(s) x 2 process(es)" in run.output
    )


def test_two_processes_with_gradient_accumulation_follow_the_same_curve(
    workdir, untrained_tiny_model, chat_jsonl, reference
):
    run, adapter = launch_two(
        workdir,
        "two-processes-accumulating",
        untrained_tiny_model,
        chat_jsonl,
        training={"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2},
    )
    assert_same_curve(adapter, reference[1])
    assert (
        "Global batch: 8 rows per optimizer step = 2 per device x 2 accumulation step(s) x 2 process(es)" in run.output
    )


def test_the_data_is_prepared_once_and_read_from_the_cache_by_the_other_process(two_processes):
    run, _ = two_processes
    assert run.count(r"Prepared \S+ and cached it in") == 1
    assert run.count(r"Using the prepared dataset cached in") == 1


def test_main_process_alone_generates_samples_evaluates_saves_and_reports(two_processes):
    run, adapter = two_processes
    # Sample answers at steps 0, 5 and 10, each once; one generation-based evaluation; one printed result.
    assert [run.count(rf"Sample answers at step {step}:") for step in (0, 5, 10)] == [1, 1, 1]
    assert run.count(r"Evaluation report written to") == 1
    assert run.stdout.count("adapter: ") == 1
    files = {path.name for path in adapter.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "eval_results.json", "sample_generations.json"} <= files
    assert "training_args.bin" not in files
    for checkpoint in ("checkpoint-5", "checkpoint-10"):  # every checkpoint got the recipe's artifacts
        assert (adapter.parent / checkpoint / "phi3_lora_recipe.yaml").is_file()
