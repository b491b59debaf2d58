"""bench_eval's dry run: the helper and the plain generate loop on a tiny model, the same answers, the table."""

from __future__ import annotations

import json
import subprocess
import sys

from phi3_testing import ROOT, subprocess_env

SCRIPT = ROOT / "benchmarks" / "bench_eval.py"


def test_the_dry_run_times_both_contenders_and_finds_the_same_greedy_answers(tmp_path):
    report = tmp_path / "eval.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--threads", "1", "--json", str(report)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| helper " in completed.stdout and "| plain " in completed.stdout
    data = json.loads(report.read_text())
    assert data["identical"] is True and data["ratio"] > 0
    assert {run["contender"] for run in data["runs"]} == {"helper", "plain"}
    assert all(run["tokens"] > 0 for run in data["runs"])
