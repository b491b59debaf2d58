"""The Space from a non-editable install: a wheel of this checkout, installed into its own folder, runs
``space run`` and ``space deploy`` with no checkout on the path; without Gradio, ``space run`` says what to install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from phi3_testing import ROOT, free_port, subprocess_env
from space_testing import wait_for_app

from phi3_lora_hub.cli.main import main

BASE = "microsoft/Phi-3-mini-4k-instruct"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """A folder holding the package installed from a freshly built wheel (dependencies come from this venv)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"  # a copy, so the build leaves nothing in the checkout and reuses nothing stale
    leave_out = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "runs", "tests", "docs")
    shutil.copytree(ROOT, source, symlinks=True, ignore=leave_out)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder), str(source)], check=True)
    (wheel,) = folder.glob("phi3_lora_hub-*.whl")
    site = folder / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    return site


def wheel_env(site: Path, **extra: str) -> dict[str, str]:
    """The session's environment with only the installed wheel on PYTHONPATH (the checkout left out)."""
    return subprocess_env(PYTHONPATH=str(site), HF_HUB_OFFLINE="0", OMP_NUM_THREADS="1", **extra)


@pytest.mark.slow
@pytest.mark.usefixtures("hub_adapters", "local_hub")
def test_space_run_works_from_an_installed_wheel(installed_wheel, tiny_model_dir, tmp_path):
    env = wheel_env(installed_wheel)
    where = subprocess.run(
        [sys.executable, "-c", "import phi3_lora_hub.space.deploy as d; print(d.__file__); print(d.default_app_dir())"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module, app_dir = (Path(line) for line in where.stdout.split())
    assert module.is_relative_to(installed_wheel) and not module.is_relative_to(ROOT)
    assert (app_dir / "app.py").read_text() == (ROOT / "space_app" / "app.py").read_text()
    port = free_port()
    command = [sys.executable, "-m", "phi3_lora_hub", "space", "run", "--base-model", str(tiny_model_dir)]
    command += ["--adapters", "tester/space-compass", "--dtype", "float32", "--data-dir", str(tmp_path / "data")]
    command += ["--port", str(port)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        page = wait_for_app(f"http://127.0.0.1:{port}/config", process)
        labels = [c["props"].get("label") for c in page.json()["components"]]
        assert "First model" in labels and "Second model" in labels
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_space_deploy_works_from_an_installed_wheel(installed_wheel, hub, trained_adapters, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download
    from space_testing import for_base, push_adapter

    push_adapter("tester/space-wheel-compass", {"main": for_base(trained_adapters.compass, BASE, tmp_path / "a")})
    command = [sys.executable, "-m", "phi3_lora_hub", "space", "deploy", "--space-id", "tester/space-from-wheel"]
    command += ["--adapters", "tester/space-wheel-compass", "--no-link-cards"]
    run = subprocess.run(command, cwd=tmp_path, env=wheel_env(installed_wheel), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "/spaces/tester/space-from-wheel" in run.stdout and " kB, commit " in run.stdout
    files = HfApi().list_repo_files("tester/space-from-wheel", repo_type="space")
    assert {"app.py", "requirements.txt", "README.md", "space_config.json", "phi3_lora_hub/space/runtime.py"} <= set(
        files
    )
    assert not any(name.startswith("phi3_lora_hub/local_hub") for name in files)
    app = Path(hf_hub_download("tester/space-from-wheel", "app.py", repo_type="space")).read_text()
    assert app == (ROOT / "space_app" / "app.py").read_text()


def test_space_run_without_gradio_says_which_extra_to_install(monkeypatch, capsys):
    import importlib.util
    import os

    monkeypatch.setattr(os, "environ", os.environ.copy())  # `space run` writes its options into the environment
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a))
    assert main(["space", "run", "--base-model", "/nonexistent"]) == 2
    assert "pip install 'phi3-lora-hub[space]'" in capsys.readouterr().err
