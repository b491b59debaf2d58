"""``phi3-lora-hub push`` and the quickstart's local Hub, run as a user runs them (child processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.hub.helpers import child_env
from tests.publish.helpers import REPO_ROOT, assert_hub_holds


def cli(*args: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "phi3_lora_hub", *args],
        capture_output=True,
        text=True,
        env=child_env(**env),
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def test_push_publishes_an_existing_adapter_with_a_card(hub, trained_run, hub_repo_id, tmp_path):
    adapter = trained_run / "adapter"
    done = cli("push", str(adapter), "--repo-id", hub_repo_id, "--branch", "release-1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"to {hub.url}/{hub_repo_id} (main, commit " in done.stdout
    assert f"branch release-1: {hub.url}/{hub_repo_id}/tree/release-1" in done.stdout
    api = HfApi()
    main = assert_hub_holds(api, hub_repo_id, "main", adapter, tmp_path / "dl")
    assert "loss_curve.png" in main
    heads = {ref.name: ref.target_commit for ref in api.list_repo_refs(hub_repo_id).branches}
    assert heads["release-1"] == heads["main"]
    card = (tmp_path / "dl" / "main" / "README.md").read_text()
    assert "This card describes the adapter after 6 training steps." in card

    again = cli("push", str(adapter), "--repo-id", hub_repo_id, "--branch", "release-1")  # the same: no new commit
    assert again.returncode == 0, again.stderr[-3000:]
    assert [c.title for c in api.list_repo_commits(hub_repo_id)] == ["Adapter after step 6", "initial commit"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--branch", "ckpt/step-10"], "'/' is refused"),
        (["--repo-id", "a/b/c"], "must be 'namespace/name'"),
    ],
)
def test_push_refuses_bad_names_with_a_one_line_error(hub, trained_run, hub_repo_id, args, message):
    base = ["push", str(trained_run / "adapter"), "--repo-id", hub_repo_id]
    done = cli(*base, *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_push_refuses_pickle_only_adapters(hub, hub_repo_id, tmp_path):
    adapter = tmp_path / "old-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"a pickle")
    done = cli("push", str(adapter), "--repo-id", hub_repo_id)
    assert done.returncode == 2
    assert "missing adapter_model.safetensors" in done.stderr and "never adapter_model.bin" in done.stderr
    assert not HfApi().repo_exists(hub_repo_id)


def test_push_without_a_token_says_what_to_do(hub, trained_run, hub_repo_id, tmp_path):
    env = child_env(HF_HOME=str(tmp_path / "home"))
    env.pop("HF_TOKEN")
    done = subprocess.run(
        [sys.executable, "-m", "phi3_lora_hub", "push", str(trained_run / "adapter"), "--repo-id", hub_repo_id],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 2 and "No Hugging Face token found" in done.stderr and "HF_TOKEN" in done.stderr


@pytest.mark.slow
def test_quickstart_pushes_to_its_own_local_hub(tmp_path):
    output = tmp_path / "qs"
    done = cli("quickstart", "--output-dir", str(output), "--max-steps", "40", timeout=900, HF_HUB_OFFLINE="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pushed to the local Hub (served on 127.0.0.1 while the quickstart ran): http://127.0.0.1:" in done.stdout
    assert "/tester/phi3-compass-lora" in done.stdout and "branches: main, step-40" in done.stdout
    assert f"phi3-lora-hub hub serve --root {output / 'hub'}" in done.stdout
    assert (output / "hub" / "local-hub.json").is_file()
    assert not Path(output / "run" / "_hubstage").exists()
