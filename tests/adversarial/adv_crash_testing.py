"""Helpers of the crash-safety and Hub-fault tests (issue 9, items 2 and 3): child runs, kills, comparisons."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from phi3_lora_hub.file_digest import sha256_of
from phi3_lora_hub.run_file_names import ADAPTER_WEIGHTS

CHILD = Path(__file__).with_name("adv_crash_child.py")
SEED = 20261129
"""Every random choice of these tests (kill times, fault schedules) comes from ``random.Random(SEED + n)``."""


@dataclass
class ChildRun:
    """One training run of ``adv_crash_child.py`` in a subprocess."""

    name: str
    output: Path
    process: subprocess.Popen
    stdout: str = ""
    stderr: str = ""

    @property
    def progress(self) -> Path:
        return progress_file(self.output, self.name)

    def events(self) -> list[dict[str, Any]]:
        """The progress events written so far (``train_begin``, ``save``, ``train_end``)."""
        if not self.progress.is_file():
            return []
        return [json.loads(line) for line in self.progress.read_text().splitlines() if line.strip()]

    @property
    def start_step(self) -> int | None:
        """The step this run's training started from (0, or the checkpoint it resumed)."""
        return next((e["step"] for e in self.events() if e["event"] == "train_begin"), None)

    @property
    def saved_steps(self) -> list[int]:
        """Steps whose save finished, every callback included (the progress callback runs after the others)."""
        return [e["step"] for e in self.events() if e["event"] == "save"]

    def wait(self, timeout: float = 300) -> int:
        self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.wait(60)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
        """Poll ``condition`` until it holds; fail (with the child's stderr) if the child ends or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.wait(60)
                raise AssertionError(f"{self.name}: never saw {what}; stderr:\n{self.stderr[-4000:]}")
            time.sleep(0.05)

    def explain(self) -> str:
        return f"{self.name} (rc {self.process.returncode}) stderr:\n{self.stderr[-4000:]}"


def progress_file(output: Path, name: str) -> Path:
    """The progress events of run ``name`` (one file per run, next to its output folder)."""
    return output.with_name(f"{output.name}.{name.replace(' ', '-')}.progress.jsonl")


def start_child(
    name: str,
    output: Path,
    *,
    base: Path,
    data: Path,
    env: dict[str, str],
    repo_id: str | None = None,
    resume: str = "none",
    kill: dict[str, Any] | None = None,
    step_sleep: float = 0.0,
) -> ChildRun:
    """Start one training run (see ``adv_crash_child.py`` for the settings)."""
    config = {
        "base": str(base),
        "data": str(data),
        "output": str(output),
        "progress": str(progress_file(output, name)),
        "repo_id": repo_id,
        "resume": resume,
        "kill": kill,
        "step_sleep": step_sleep,
    }
    command = [sys.executable, str(CHILD), json.dumps(config)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return ChildRun(name, output, process)


def assert_same_adapter(reference: Path, actual: Path) -> None:
    """The strongest equality training can promise: every LoRA tensor bit-identical, and the file itself too."""
    expected, got = load_file(reference / ADAPTER_WEIGHTS), load_file(actual / ADAPTER_WEIGHTS)
    assert expected.keys() == got.keys(), f"{actual}: other tensors than {reference}"
    differing = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert not differing, f"{actual}: {len(differing)} tensors differ from {reference}, e.g. {differing[0]}"
    assert sha256_of(reference / ADAPTER_WEIGHTS) == sha256_of(actual / ADAPTER_WEIGHTS)


@dataclass
class Tally:
    """What a test survived, printed at its end (``pytest -s`` shows it; the closing note of issue 9 counts it)."""

    title: str
    entries: list[str] = field(default_factory=list)

    def add(self, entry: str) -> None:
        self.entries.append(entry)

    def report(self) -> str:
        text = f"{self.title}: {len(self.entries)}\n" + "\n".join(f"  - {entry}" for entry in self.entries)
        print(text)
        return text


def fake_adapter(directory: Path) -> Path:
    """The two files a publishable adapter needs (the card is generated from what is there)."""
    directory.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 2, "base_model_name_or_path": "x"}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    save_file({"lora_A": torch.zeros(2, 2)}, directory / "adapter_model.safetensors")
    return directory
