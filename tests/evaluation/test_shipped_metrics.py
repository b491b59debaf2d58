"""The shipped evaluate modules: loadable offline, and equal to hand-computed values on tiny inputs."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import evaluate
import pytest

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.metrics import (
    GENERATION_METRICS,
    METRICS,
    combine_metrics,
    load_metric,
    metric_path,
)

ROOT = Path(__file__).resolve().parents[2]


class CharTokenizer:
    """A stand-in tokenizer with one token per character, so token counts are easy to compute by hand."""

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [list(text) for text in texts]}


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Fail the test on any socket connection or Hub download, with a fresh evaluate modules cache."""
    import evaluate.config
    import evaluate.loading

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(evaluate.loading, "cached_path", refuse)
    monkeypatch.setattr(evaluate.loading.HubEvaluationModuleFactory, "get_module", refuse)
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")


def test_every_metric_loads_and_computes_with_the_network_off(no_network):
    import os

    assert os.environ["HF_EVALUATE_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    for name in GENERATION_METRICS:
        module = evaluate.load(metric_path(name), keep_in_memory=True)
        inputs = {"predictions": ["Lima.<|end|>"]}
        if "references" in module._feature_names():
            inputs["references"] = ["Lima."]
        assert module.compute(**inputs), name
    perplexity = evaluate.load(metric_path("perplexity"), keep_in_memory=True)
    assert perplexity._feature_names() == ["conversations"]


def test_metric_scripts_follow_evaluates_import_rules():
    # evaluate downloads relative imports ("internal"/"external") even from a local script, and reads
    # `import a, b` as one library named "a,": every import must be a plain, importable library.
    import importlib

    from evaluate.loading import get_imports

    for name in METRICS:
        imports = get_imports(str(Path(metric_path(name)) / f"{name}.py"))
        assert imports, name
        for kind, library, _, _ in imports:
            assert kind == "library", (name, kind, library)
            assert library.isidentifier(), (name, library)
            importlib.import_module(library)


def test_unknown_metric_names_suggest_the_right_one():
    with pytest.raises(ConfigError, match="rouge_l"):
        metric_path("rouge")


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat": P = R = F = 5/6.
    result = load_metric("rouge_l").compute(
        predictions=["the cat sat on the mat", "Lima is the capital.<|end|>ignored"],
        references=["the cat is on the mat", "lima is the capital"],
    )
    assert result["rougeL"] == pytest.approx((5 / 6 + 1.0) / 2)


def test_chrf_by_hand():
    # Orders 1-3 exist: precision = recall = 2/3, 1/2, 0 -> both average 7/18; F2 of equal P and R is that value.
    assert load_metric("chrf").compute(predictions=["abc"], references=["abd"])["chrf"] == pytest.approx(700 / 18)
    assert load_metric("chrf").compute(predictions=["abc<|end|>"], references=["abc"])["chrf"] == pytest.approx(100)


def test_bleu_by_hand():
    # Precisions 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty: BLEU = (1/12) ** (1/4).
    result = load_metric("bleu").compute(predictions=["the cat sat on the mat"], references=["the cat sat on a mat"])
    assert result["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25)


def test_exact_match_by_hand():
    predictions = ["Paris.<|end|>", "  rome ", "Oslo!"]
    references = ["Paris.", "Rome", "Oslo"]
    metric = load_metric("exact_match")
    assert metric.compute(predictions=predictions, references=references)["exact_match"] == pytest.approx(1 / 3)
    both = metric.compute(predictions=predictions, references=references, ignore_case=True, ignore_punctuation=True)
    assert both["exact_match"] == 1.0


def test_answer_length_by_hand():
    result = load_metric("answer_length").compute(
        predictions=["Paris is nice.<|end|>", "Yes"], tokenizer=CharTokenizer()
    )
    assert result == {"mean_answer_words": 2.0, "mean_answer_chars": 8.5, "mean_answer_tokens": 8.5}


def test_stop_rate_by_hand():
    raw = ["Lima.<|end|>", "Lima. Lima. Lima.", "Lima.<|endoftext|>", "Lima.<|assistant|>"]
    metric = load_metric("stop_rate")
    assert metric.compute(predictions=raw)["stop_rate"] == 0.75
    assert metric.compute(predictions=raw, stop_tokens=["<|end|>"])["stop_rate"] == 0.25


def test_combine_passes_every_keyword_to_every_metric():
    combined = combine_metrics()
    result = combined.compute(
        predictions=["the cat sat on the mat<|end|>", "Paris. Paris. Paris"],
        references=["the cat sat on the mat", "Paris."],
        tokenizer=CharTokenizer(),
        conversations=[[{"role": "user", "content": "x"}]],  # for perplexity; ignored by the others
    )
    assert set(result) == {
        "rougeL",
        "chrf",
        "bleu",
        "exact_match",
        "mean_answer_words",
        "mean_answer_chars",
        "mean_answer_tokens",
        "stop_rate",
    }
    assert result["exact_match"] == 0.5
    assert result["stop_rate"] == 0.5
    assert result["mean_answer_tokens"] == pytest.approx(
        (len("the cat sat on the mat") + len("Paris. Paris. Paris")) / 2
    )
    with pytest.raises(TypeError, match="lowercase"):
        combined.compute(predictions=["a"], references=["a"], lowercase=True)


def test_mismatched_inputs_are_explained():
    with pytest.raises(ValueError):
        load_metric("chrf").compute(predictions=["a", "b"], references=["a"])
    with pytest.raises(ValueError, match="model"):
        load_metric("perplexity").compute(conversations=[[{"role": "user", "content": "x"}]])
    assert math.isfinite(load_metric("chrf").compute(predictions=[""], references=["abc"])["chrf"])


def test_the_wheel_ships_the_metric_scripts(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / item, source / item)
    # The package, and the top-level folders pyproject.toml maps into it (card templates, the Space app).
    for folder in ("phi3_lora_hub", "model_card_templates", "space_app"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in METRICS:
        assert f"phi3_lora_hub/evaluation/metrics/{name}/{name}.py" in names
