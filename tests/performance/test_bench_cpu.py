"""The CPU benchmarks' fast paths: bench_train compares the recipe with the fastest TRL contender, bench_data reports
cold preparation as a ratio to the tokenizer alone."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from phi3_testing import ASSETS, ROOT, requires_assets, subprocess_env


def _bench_train():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry(rate: float, peak: float) -> dict[str, float]:
    return {"tokens_per_second": rate, "peak_rss_mib": peak, "train_rss_mib": peak / 2, "tokens": 100, "seconds": 1.0}


def test_bench_train_rates_every_contender_against_the_fastest_trl_one():
    bench = _bench_train()
    entries = {
        "recipe": _entry(300.0, 900.0),
        "trl-best": _entry(100.0, 3000.0),
        "trl-packed": _entry(150.0, 2500.0),
        "trl-padfree": _entry(120.0, 2000.0),
    }
    assert bench.fastest_trl(entries) == "trl-packed"
    text = bench._report(entries)
    assert "vs trl-packed" in text and "| recipe " in text and "2.00x" in text
    assert "recipe vs the fastest TRL contender (trl-packed): 2.00x effective tokens/s, peak RSS 900 vs 2500" in text


def test_every_trl_contender_trains_on_assistant_tokens_only_without_checkpointing_in_fp32():
    bench = _bench_train()
    for name in bench.CONTENDERS:
        if name.startswith("trl"):
            settings = bench.TRL_SETTINGS[name]
            assert settings["assistant_only_loss"] and not settings["gradient_checkpointing"] and not settings["bf16"]


@requires_assets
@pytest.mark.real_assets
@pytest.mark.slow
def test_bench_data_reports_cold_preparation_against_the_tokenizer_ceiling(tmp_path):
    report = tmp_path / "data.json"
    options = ["--assets", str(ASSETS), "--rows", "300", "--repeats", "1", "--threads", "1", "--json", str(report)]
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_data.py"), *options],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| vs ceiling |" in completed.stdout and "cold / ceiling: " in completed.stdout
    summary = json.loads(report.read_text())["summary"]
    assert summary["threads"] == "1" and summary["cold_vs_ceiling"] > 0
