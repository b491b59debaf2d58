"""``phi3-lora-hub space run|deploy`` from the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from huggingface_hub import SpaceCard
from phi3_testing import ROOT, free_port, subprocess_env
from space_testing import wait_for_app

from phi3_lora_hub.cli.main import main


def test_space_deploy_can_write_the_files_without_uploading(tmp_path, capsys):
    code = main(
        [
            "space",
            "deploy",
            "--space-id",
            "me/arena",
            "--adapters",
            "me/compass-lora, me/terse-lora",
            "--allow",
            "me/*",
            "--title",
            "My arena",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "nothing uploaded" in out
    size = sum(path.stat().st_size for path in (tmp_path / "out").rglob("*") if path.is_file())
    assert f"files, {size / 1000:.1f} kB)" in out  # the size of what a deploy would upload
    config = json.loads((tmp_path / "out" / "space_config.json").read_text())
    assert config["PHI3_SPACE_ADAPTERS"] == "me/compass-lora,me/terse-lora" and config["PHI3_SPACE_ALLOWLIST"] == "me/*"
    metadata = SpaceCard.load(tmp_path / "out" / "README.md").data
    assert metadata.title == "My arena" and "me/terse-lora" in metadata.models
    assert (tmp_path / "out" / "phi3_lora_hub" / "space" / "runtime.py").is_file()


def test_space_deploy_uploads_to_the_hub(hub, trained_adapters, capsys, tmp_path):
    from space_testing import for_base, push_adapter

    adapter = for_base(trained_adapters.compass, "microsoft/Phi-3-mini-4k-instruct", tmp_path / "compass")
    push_adapter("tester/space-cli-compass", {"main": adapter})  # its card gets a link
    code = main(["space", "deploy", "--space-id", "tester/space-cli", "--adapters", "tester/space-cli-compass"])
    out = capsys.readouterr().out
    assert code == 0 and "/spaces/tester/space-cli" in out and "model card of tester/space-cli-compass links" in out
    assert re.search(r"\(\d+ files, \d+\.\d kB, commit [0-9a-f]{40}\)", out)
    from huggingface_hub import HfApi

    assert "app.py" in HfApi().list_repo_files("tester/space-cli", repo_type="space")


def test_bad_settings_fail_before_anything_loads(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", os.environ.copy())  # `space run` writes its options into the environment
    assert main(["space", "run", "--max-loaded", "1", "--base-model", "/nonexistent"]) == 2
    assert "PHI3_SPACE_MAX_LOADED must be at least 2" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["space", "deploy", "--space-id", "../x", "--adapters", "me/a", "--output-dir", str(out)]) == 2
    assert "--space-id '../x' is not a repo id" in capsys.readouterr().err and not out.exists()
    assert main(["space", "deploy", "--space-id", "me/x", "--adapters", "me/a,bad", "--output-dir", str(out)]) == 2
    assert "Allowlist entry 'bad'" in capsys.readouterr().err


@pytest.mark.usefixtures("hub_adapters")
def test_space_run_serves_the_app(tiny_model_dir, tmp_path, local_hub):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "phi3_lora_hub",
        "space",
        "run",
        "--base-model",
        str(tiny_model_dir),
        "--adapters",
        "tester/space-compass",
        "--dtype",
        "float32",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(port),
    ]
    env = subprocess_env(HF_HUB_OFFLINE="0", OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        page = wait_for_app(f"http://127.0.0.1:{port}/config", process)
        labels = [c["props"].get("label") for c in page.json()["components"]]
        assert "First model" in labels and "Second model" in labels
        choices = next(
            c["props"]["choices"] for c in page.json()["components"] if c["props"].get("label") == "Second model"
        )
        assert ["tester/space-compass", "tester/space-compass"] in choices
    finally:
        process.terminate()
        process.wait(timeout=30)
