"""Multi-node rehearsal on one machine: 2 "nodes" of 1 process each, started as two separate ``torchrun`` agents
that find each other through a c10d rendezvous on 127.0.0.1, exactly as on a cluster (where each node runs the
same command and the endpoint is the first node's address; examples/README.md, "Several machines").

Each node has its own data cache (node-local disks) and both write to one output directory (a shared file system):
each node prepares the data once, only the global main process writes the adapter, and the loss curve is the one of
a single process with the same global batch (see test_scale_two_process_training.py for why and the tolerance).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from phi3_testing import free_port, subprocess_env
from scale_testing import LAUNCH_TIMEOUT_S, Run, cli, loss_curve, run_command, torchrun, write_recipe

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, untrained_tiny_model, chat_jsonl):
    workdir = tmp_path_factory.mktemp("multi-node")
    reference = workdir / "one-process"
    recipe = write_recipe(workdir / "one.yaml", untrained_tiny_model, chat_jsonl, reference)
    run_command([sys.executable, *cli("train", str(recipe))]).check()

    output = workdir / "two-nodes"
    recipe = write_recipe(
        workdir / "two.yaml", untrained_tiny_model, chat_jsonl, output, training={"per_device_train_batch_size": 4}
    )
    endpoint = f"127.0.0.1:{free_port()}"
    rendezvous = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint]
    nodes = [
        subprocess.Popen(
            torchrun(*rendezvous, "--rdzv_id", "rehearsal", program=cli("train", str(recipe))),
            env=subprocess_env(PHI3_LORA_HUB_CACHE=str(workdir / f"node{rank}-cache")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    runs = []
    for node in nodes:
        stdout, stderr = node.communicate(timeout=LAUNCH_TIMEOUT_S)
        runs.append(Run(node.returncode, stdout, stderr).check())
    return runs, output / "adapter", reference / "adapter"


def test_two_nodes_train_the_curve_of_one_process(rehearsal):
    _, adapter, reference = rehearsal
    expected, actual = loss_curve(reference), loss_curve(adapter)
    assert sorted(actual) == sorted(expected) == list(range(1, 11))
    assert max(abs(actual[step] - expected[step]) for step in expected) <= TOLERANCE


def test_each_node_prepares_the_data_once_in_its_own_cache(rehearsal):
    runs, _, _ = rehearsal
    assert [run.count(r"Prepared \S+ and cached it in") for run in runs] == [1, 1]


def test_only_the_global_main_process_reports_and_saves(rehearsal):
    runs, adapter, _ = rehearsal
    # Which node hosts global rank 0 is decided by the rendezvous; exactly one of them does.
    assert sorted(run.stdout.count("adapter: ") for run in runs) == [0, 1]
    assert sorted(run.count(r"Evaluation report written to") for run in runs) == [0, 1]
    assert sorted(run.count(r"launch: 2 process\(es\), DDP") for run in runs) == [0, 1]
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "eval_results.json").is_file()
