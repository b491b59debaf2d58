"""bench_gpu's CPU dry run: the same code path as on a GPU (trainers, timing, MFU, table), at tiny sizes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from phi3_testing import ROOT, subprocess_env

SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


@pytest.mark.slow
def test_dry_run_trains_every_contender_and_prints_the_table(tmp_path):
    report = tmp_path / "gpu.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--json", str(report)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| recipe " in completed.stdout and "| trl " in completed.stdout
    import json

    runs = {run["contender"]: run for run in json.loads(report.read_text())["runs"]}
    assert runs["recipe"]["attention"] == "per-sequence sdpa" and runs["trl"]["attention"] == "sdpa"
    assert runs["recipe"]["tokens"] == runs["trl"]["tokens"] > 0
    assert runs["recipe"]["model_flops_per_second"] > 0
    assert "skipped" in runs["recipe-qlora"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed where there is no GPU")
def test_without_a_gpu_it_says_so_and_exits_cleanly():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=subprocess_env(), timeout=300, check=False
    )
    assert completed.returncode == 0
    assert "no CUDA GPU" in completed.stdout
