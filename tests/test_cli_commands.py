"""The phi3-lora-hub command line, run as a user runs it (in a child process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from phi3_testing import ROOT, subprocess_env

from phi3_lora_hub.data.sample import write_sample_dataset


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "phi3_lora_hub", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def config_file(tiny_model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli")
    dataset = write_sample_dataset(workdir / "data.jsonl", n=64)
    path = workdir / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "dataset": str(dataset),
                "output_dir": str(workdir / "out"),
                "training": {"max_steps": 2, "per_device_train_batch_size": 4, "save_steps": 2, "disable_tqdm": True},
                "lora": {"r": 4},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def trained_adapter(config_file):
    done = cli("train", str(config_file), "--set", "training.max_steps=4", "--set", "lora.lora_alpha=8")
    assert done.returncode == 0, done.stderr
    adapter = config_file.parent / "out" / "adapter"
    saved = yaml.safe_load((adapter / "phi3_lora_recipe.yaml").read_text())
    assert saved["training"]["max_steps"] == 4 and saved["lora"]["lora_alpha"] == 8
    return adapter


def test_train_with_overrides_writes_an_adapter(trained_adapter):
    assert (trained_adapter / "adapter_model.safetensors").is_file()
    assert json.loads((trained_adapter / "adapter_config.json").read_text())["lora_alpha"] == 8


def test_dry_run_prints_the_resolved_config_and_data_report(config_file):
    done = cli("train", str(config_file), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "learning_rate: 0.0001" in done.stdout
    assert "# train data: data.jsonl: messages format, 64/64 rows used" in done.stdout


def test_chat_answers_one_prompt(trained_adapter):
    done = cli(
        "chat", "--adapter", str(trained_adapter), "--prompt", "What is the capital of Peru?", "--max-new-tokens", "8"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_merge_writes_a_plain_model(trained_adapter, tmp_path):
    done = cli("merge", "--adapter", str(trained_adapter), "--output", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()


def test_errors_are_one_readable_message_unless_debug(config_file):
    done = cli("train", str(config_file), "--set", "training.learning_rte=1e-3")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: Unknown training key 'learning_rte'. Did you mean 'learning_rate'? (see trl.SFTConfig)"
    )
    assert "Traceback" not in done.stderr
    debug = cli("--debug", "train", str(config_file), "--set", "training.learning_rte=1e-3")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_an_error_is_written_with_its_newline_in_one_call(config_file, monkeypatch):
    """Under a launcher every process fails alike on one shared stderr: a message written in two calls (``print``
    writes the newline apart) ran into the next process's message on the same line."""
    from phi3_lora_hub.cli.main import main

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    stderr = Recorder()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(["train", str(config_file), "--set", "training.learning_rte=1e-3"]) == 2
    assert stderr.writes == [
        "error: Unknown training key 'learning_rte'. Did you mean 'learning_rate'? (see trl.SFTConfig)\n"
    ]


def test_bad_data_error_names_the_row(config_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}\n{"messages": []}\n'
    )
    done = cli("train", str(config_file), "--set", f"dataset={bad}", "--dry-run")
    assert done.returncode == 2
    assert "row 1 (line 2), messages: empty conversation" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_quickstart_runs_end_to_end(tmp_path):
    done = cli("quickstart", "--output-dir", str(tmp_path / "qs"), "--max-steps", "60", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Same questions, base model vs adapter" in done.stdout
    assert (tmp_path / "qs" / "run" / "adapter" / "adapter_model.safetensors").is_file()
