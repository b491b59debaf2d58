"""bench_gpu's CPU dry run: the same code path as on a GPU (trainers, timing, MFU, table), at tiny sizes."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import types

import pytest
import torch
from phi3_testing import ROOT, subprocess_env

SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
_SPEC = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
bench_gpu = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_gpu)


def test_dry_run_trains_every_contender_and_prints_the_table(tmp_path):
    report = tmp_path / "gpu.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--json", str(report)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| recipe " in completed.stdout and "| trl-defaults " in completed.stdout
    runs = {run["contender"]: run for run in json.loads(report.read_text())["runs"]}
    assert set(runs) == {"recipe", "trl-padding-free", "trl-grouped", "trl-defaults", "recipe-qlora"}
    assert runs["recipe"]["attention"] == "per-sequence sdpa" and runs["trl-defaults"]["attention"] == "sdpa"
    assert runs["trl-defaults"]["gradient_checkpointing"] and not runs["trl-grouped"]["gradient_checkpointing"]
    assert all(
        runs[name]["tokens"] > 0 and runs[name]["model_flops_per_second"] > 0 for name in set(runs) - {"recipe-qlora"}
    )
    assert "skipped" in runs["recipe-qlora"]


def test_a_failing_contender_is_a_row_and_the_budget_skips_the_rest(monkeypatch):
    now = [0.0]  # a clock the contenders advance: 10 s for the failing one, 60 s for the next
    monkeypatch.setattr(bench_gpu, "time", types.SimpleNamespace(perf_counter=lambda: now[0], strftime=time.strftime))
    monkeypatch.setattr(bench_gpu, "START", 0.0)
    saved = []

    def run(name):
        if name == "recipe":
            now[0] += 10
            raise RuntimeError("CUDA out of memory")
        now[0] += 60
        return {"contender": name, "tokens": 1, "tokens_per_second": 1.0, "steps": 1}

    args = argparse.Namespace(device="cuda", budget_s=100, first_estimate_s=30)
    results = bench_gpu.run_all(["recipe", "trl-defaults", "trl-grouped"], args, run, lambda r: saved.append(len(r)))
    assert results[0]["error"] == "RuntimeError: CUDA out of memory"
    assert results[1]["tokens"] == 1
    assert results[2]["skipped"] == "time budget: 30 s left, the contender needs ~60 s"
    assert saved == [1, 2, 3]  # the report is rewritten after every contender


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed where there is no GPU")
def test_without_a_gpu_it_says_so_and_exits_cleanly():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=subprocess_env(), timeout=300, check=False
    )
    assert completed.returncode == 0
    assert "no CUDA GPU" in completed.stdout
