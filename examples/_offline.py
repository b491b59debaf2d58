"""Shared by the examples: the ``--tiny`` switch that runs any example offline on the tiny Phi-3.

With ``--tiny`` the real model and dataset are replaced by the project's offline tiny Phi-3 and its bundled
sample data, and training is cut to a few steps, so the test suite can execute every example on a CPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

RUNS_DIR = Path(__file__).resolve().parent.parent / "runs"
"""Where the examples write by default: ``runs/`` at the top of the checkout, which git ignores."""

TINY_TRAINING: dict[str, Any] = {
    "max_steps": 20,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 3e-3,
    "save_steps": 10,
    "logging_steps": 5,
}


def add_tiny_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiny", action="store_true", help="run offline on the tiny Phi-3 and the bundled data")
    parser.add_argument("--output-dir", default=None, help=f"where checkpoints and the adapter go (under {RUNS_DIR})")


def output_dir(chosen: str | None, name: str) -> str:
    """``chosen`` (``--output-dir``) when given, else ``runs/<name>`` at the top of the checkout."""
    return chosen or str(RUNS_DIR / name)


def tiny_model_and_data(workdir: str | Path | None = None) -> tuple[str, str]:
    """The tiny Phi-3 (``model="tiny"``, built on first use) and a JSONL file of the bundled sample conversations."""
    from phi3_lora_hub.data.sample import write_sample_dataset

    workdir = Path(workdir or tempfile.mkdtemp(prefix="phi3-example-"))
    return "tiny", str(write_sample_dataset(workdir / "compass.jsonl", n=200))
