"""Helpers of the multi-process tests: tiny recipe files, launching the CLI under a launcher, reading the logs.

Every run is the real command line (``python -m phi3_lora_hub train``) started by the real launcher
(``accelerate launch`` or ``torchrun``), on CPU with the gloo backend, with one thread per process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from phi3_testing import ROOT, free_port, subprocess_env

ACCELERATE_CONFIGS = ROOT / "examples" / "accelerate"
LAUNCH_TIMEOUT_S = 300

COMPARISON: dict[str, Any] = yaml.safe_load((ROOT / "benchmarks" / "scale_comparison.yaml").read_text())
"""The settings of the loss-curve comparison, shared with ``benchmarks/scale_loss_curves.py`` (see the file)."""
COMPARISON_EVALUATION: dict[str, Any] = {
    "num_samples": 1,
    "sample_max_new_tokens": 8,
    "max_examples": 4,
    "max_new_tokens": 8,
    "metrics": ["perplexity", "rouge_l"],
}


def write_recipe(
    path: Path, model_dir: Path, dataset: Path, output_dir: Path, *, training: dict[str, Any] | None = None, **extra
) -> Path:
    """A recipe YAML for the tiny model: the comparison settings, ``training`` merged over them."""
    settings = {
        **COMPARISON,
        "model": str(model_dir),
        "dataset": str(dataset),
        "output_dir": str(output_dir),
        "training": {**COMPARISON["training"], **(training or {})},
        "evaluation": dict(COMPARISON_EVALUATION),
        **extra,
    }
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


@dataclass
class Run:
    """A finished command: exit code and output."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def count(self, pattern: str) -> int:
        """Lines of stdout+stderr matching the regular expression ``pattern``."""
        return sum(1 for line in self.output.splitlines() if re.search(pattern, line))

    def check(self) -> Run:
        assert self.returncode == 0, f"exit code {self.returncode}\n{self.output[-6000:]}"
        return self


def run_command(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env or subprocess_env(),
        cwd=cwd or ROOT,
        timeout=LAUNCH_TIMEOUT_S,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def cli(*args: str) -> list[str]:
    """``python -m phi3_lora_hub ARGS`` as the arguments a launcher runs with ``-m``."""
    return ["-m", "phi3_lora_hub", *args]


def accelerate_launch(config: str | Path, *launch_args: str, program: list[str]) -> list[str]:
    """``accelerate launch --config_file CONFIG LAUNCH_ARGS PROGRAM``."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--main_process_port",
        str(free_port()),
        *launch_args,
        *program,
    ]


def torchrun(*launch_args: str, program: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch_args, *program]


def loss_curve(adapter_dir: Path) -> dict[int, float]:
    """Training loss per step, full precision, from the ``trainer_log.json`` the recipe saves with the adapter."""
    history = json.loads((adapter_dir / "trainer_log.json").read_text())
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def eval_losses(adapter_dir: Path) -> dict[int, float]:
    history = json.loads((adapter_dir / "trainer_log.json").read_text())
    return {entry["step"]: entry["eval_loss"] for entry in history if "eval_loss" in entry}
