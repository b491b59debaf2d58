"""Every accelerate config in examples/accelerate/ launched for real: ``accelerate launch --config_file X
--num_processes 2 -m phi3_lora_hub train recipe.yaml --dry-run`` on this machine's CPUs.

A dry run starts the launcher and both processes, forms the process group (gloo), resolves the launch settings
through accelerate's plugins, checks them against the recipe and prepares the data (once: the first process writes
the cache, the second reads it); it stops before loading the model. On a machine without a GPU accelerate runs
FSDP configs as multi-CPU data parallelism, so FSDP itself (sharding, wrapping) is not exercised, and DeepSpeed
cannot start at all: those configs are launched only where DeepSpeed and CUDA GPUs exist, and checked without
starting processes in test_scale_launch_configs.py.
"""

from __future__ import annotations

import importlib.util
import subprocess

import pytest
from phi3_testing import free_port, subprocess_env
from scale_testing import (
    ACCELERATE_CONFIGS,
    LAUNCH_TIMEOUT_S,
    Run,
    accelerate_launch,
    cli,
    run_command,
    write_recipe,
)

pytestmark = pytest.mark.slow

PREPARED = r"Prepared \S+ and cached it in"
FROM_CACHE = r"Using the prepared dataset cached in"


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.fixture
def recipe_file(tmp_path, untrained_tiny_model, chat_jsonl):
    return write_recipe(tmp_path / "recipe.yaml", untrained_tiny_model, chat_jsonl, tmp_path / "out")


def dry_run(config: str, recipe_file, cache, *launch_args: str, overrides: tuple[str, ...] = ()) -> Run:
    sets = [arg for override in overrides for arg in ("--set", override)]
    command = accelerate_launch(
        ACCELERATE_CONFIGS / config,
        "--num_processes",
        "2",
        *launch_args,
        program=cli("train", str(recipe_file), "--dry-run", *sets),
    )
    return run_command(command, env=subprocess_env(PHI3_LORA_HUB_CACHE=str(cache)))


@pytest.mark.parametrize(
    ("config", "launch", "overrides"),
    [
        ("ddp.yaml", "DDP (data parallel)", ()),
        ("fsdp.yaml", "FSDP2 (FULL_STATE_DICT, sharded=True)", ()),
        ("fsdp_qlora.yaml", "FSDP1 (FULL_STATE_DICT, sharded=True)", ("quantization=4bit",)),
    ],
)
def test_single_machine_config_dry_runs_on_two_processes(config, launch, overrides, recipe_file, tmp_path):
    run = dry_run(config, recipe_file, tmp_path / "cache", overrides=overrides).check()
    assert f"# launch: 2 process(es), {launch}" in run.stdout
    assert run.count(r"^model: ") == 1  # the resolved config, printed by the main process only
    # One process prepared the data and filled the cache; the other waited and read it.
    assert (run.count(PREPARED), run.count(FROM_CACHE)) == (1, 1), run.output[-3000:]
    if not _gpus() and config.startswith("fsdp"):
        assert "without a GPU accelerate runs it as multi-CPU data parallelism" in run.stdout


def test_multi_node_config_dry_runs_as_two_machines_on_loopback(recipe_file, tmp_path):
    """Both "machines" run the same command but --machine_rank; each has its own node-local data cache."""
    port = str(free_port())
    children = []
    for rank in (0, 1):
        command = accelerate_launch(
            ACCELERATE_CONFIGS / "multi_node.yaml",
            "--num_processes",
            "2",
            "--machine_rank",
            str(rank),
            "--main_process_ip",
            "127.0.0.1",
            program=cli("train", str(recipe_file), "--dry-run"),
        )
        command[command.index("--main_process_port") + 1] = port  # both machines meet on machine 0's port
        env = subprocess_env(PHI3_LORA_HUB_CACHE=str(tmp_path / f"cache-node{rank}"))
        children.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    runs = []
    for child in children:
        stdout, stderr = child.communicate(timeout=LAUNCH_TIMEOUT_S)
        runs.append(Run(child.returncode, stdout, stderr).check())
    assert [run.count(PREPARED) for run in runs] == [1, 1]  # once per node: node-local caches
    assert sum("# launch: 2 process(es), DDP" in run.stdout for run in runs) == 1  # printed by the main process


def test_launch_settings_that_break_the_recipe_stop_every_process_before_loading(recipe_file, tmp_path):
    """An FSDP config saving sharded state dicts: the dry run fails with the fix, on both processes."""
    import yaml

    settings = yaml.safe_load((ACCELERATE_CONFIGS / "fsdp.yaml").read_text())
    settings["fsdp_config"]["fsdp_state_dict_type"] = "SHARDED_STATE_DICT"
    config = tmp_path / "sharded.yaml"
    config.write_text(yaml.safe_dump(settings))
    run = dry_run(str(config), recipe_file, tmp_path / "cache")
    assert run.returncode != 0
    assert run.count(r"error: .*fsdp_state_dict_type: FULL_STATE_DICT") == 2
    assert run.count(PREPARED) == 0


def test_bad_rows_stop_every_process_with_the_data_error(tmp_path, untrained_tiny_model, chat_jsonl):
    """The first process finds the bad row while preparing; the waiting process is released, not left hanging."""
    import json

    rows = chat_jsonl.read_text().splitlines()
    rows[3] = json.dumps({"messages": [{"role": "user", "content": "No answer here."}]})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    recipe = write_recipe(tmp_path / "recipe.yaml", untrained_tiny_model, bad, tmp_path / "out")
    run = dry_run("ddp.yaml", recipe, tmp_path / "cache")
    assert run.returncode != 0
    assert run.count(r"error: .*1 of 200 rows cannot be used") >= 1, run.output[-3000:]
    assert "row 3" in run.output


@pytest.mark.parametrize("config", ["deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_deepspeed_config_dry_runs_where_deepspeed_can_start(config, recipe_file, tmp_path):
    if importlib.util.find_spec("deepspeed") is None or _gpus() < 2:
        pytest.skip("DeepSpeed needs the deepspeed package and CUDA GPUs (checked without launching elsewhere)")
    run = dry_run(config, recipe_file, tmp_path / "cache").check()
    assert f"DeepSpeed ZeRO-{config[-6]}" in run.stdout
    assert (run.count(PREPARED), run.count(FROM_CACHE)) == (1, 1)
