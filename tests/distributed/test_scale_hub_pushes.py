"""Two processes training with ``hub_model_id``: the local Hub receives one commit per checkpoint (each with its
card, on ``main`` and on its ``step-N`` branch) and the final adapter, all from the main process.

The run is the one of test_scale_two_process_training.py (``accelerate launch --config_file
examples/accelerate/ddp.yaml --num_processes 2``, gloo on CPU), pushing to the session's local Hub.
"""

from __future__ import annotations

from collections import Counter

import pytest
from phi3_testing import subprocess_env
from scale_testing import ACCELERATE_CONFIGS, accelerate_launch, cli, run_command, write_recipe

pytestmark = pytest.mark.slow


@pytest.fixture
def pushed(hub, hub_repo_id, tmp_path, untrained_tiny_model, chat_jsonl):
    recipe = write_recipe(
        tmp_path / "recipe.yaml", untrained_tiny_model, chat_jsonl, tmp_path / "out", hub_model_id=hub_repo_id
    )
    command = accelerate_launch(
        ACCELERATE_CONFIGS / "ddp.yaml", "--num_processes", "2", program=cli("train", str(recipe))
    )
    env = subprocess_env(HF_HUB_OFFLINE="0", PHI3_LORA_HUB_CACHE=str(tmp_path / "cache"))
    run = run_command(command, env=env).check()
    return run, hub_repo_id, [record for record in hub.requests if hub_repo_id in record.path or "/api/" in record.path]


def test_one_commit_per_checkpoint_then_the_final_adapter(pushed):
    from huggingface_hub import HfApi

    _, repo_id, _ = pushed
    api = HfApi()
    commits = api.list_repo_commits(repo_id)
    assert [commit.title for commit in commits] == [
        "Adapter after step 10",
        "Checkpoint step 10",
        "Checkpoint step 5",
        "initial commit",
    ]
    by_title = {commit.title: commit.commit_id for commit in commits}
    branches = {ref.name: ref.target_commit for ref in api.list_repo_refs(repo_id).branches}
    assert branches == {
        "main": by_title["Adapter after step 10"],
        "step-10": by_title["Checkpoint step 10"],
        "step-5": by_title["Checkpoint step 5"],
    }
    for commit in commits[:3]:  # every pushed commit carries the adapter and its card
        files = set(api.list_repo_files(repo_id, revision=commit.commit_id))
        assert {"README.md", "adapter_model.safetensors", "adapter_config.json"} <= files


def test_only_the_main_process_talks_to_the_hub(pushed):
    run, repo_id, requests = pushed
    routes = Counter((record.method, record.route.replace(repo_id, "REPO")) for record in requests)
    assert routes[("GET", "/api/whoami-v2")] == 1  # the token is checked once, not once per process
    assert routes[("POST", "/api/repos/create")] == 1
    assert routes[("POST", "/api/models/REPO/commit/main")] == 3  # step 5, step 10, final adapter
    assert (
        routes[("POST", "/api/models/REPO/branch/step-5")] == routes[("POST", "/api/models/REPO/branch/step-10")] == 1
    )
    assert routes[("POST", "/api/validate-yaml")] == 3  # one card rendered per push
    assert run.count(r"Hub: pushed ") == 3
    assert run.count(r"Hub pushes to .*: 3 pushed") == 1
