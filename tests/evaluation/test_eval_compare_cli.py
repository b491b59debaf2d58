"""The eval and compare commands, and naming models as base / directory / Hub repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phi3_lora_hub.arena.votes import read_votes
from phi3_lora_hub.cli.main import main
from phi3_lora_hub.errors import ConfigError, ModelError
from phi3_lora_hub.evaluation.models import ModelSpec, resolve_adapter
from phi3_lora_hub.evaluation.report import EvaluationReport

SHA = "89abcdef0123456789abcdef0123456789abcdef"


def test_model_specs():
    assert ModelSpec.parse("base") == ModelSpec("base")
    assert ModelSpec.parse("me/compass-lora@step-500") == ModelSpec("hub", "me/compass-lora", "step-500")
    assert ModelSpec.parse("me/compass-lora") == ModelSpec("hub", "me/compass-lora", None)
    assert str(ModelSpec.parse("me/compass-lora@v1")) == "me/compass-lora@v1"
    with pytest.raises(ConfigError, match=r"Adapter directory './missing-dir' does not exist \(looked for /"):
        ModelSpec.parse("./missing-dir")
    with pytest.raises(ConfigError, match="neither"):
        ModelSpec.parse("not a repo")


def test_hub_adapters_resolve_through_snapshot_download(monkeypatch, tmp_path, trained_run):
    import shutil

    import huggingface_hub

    snapshot = tmp_path / "models--me--compass-lora" / "snapshots" / SHA
    shutil.copytree(trained_run.adapter_dir, snapshot)
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs["revision"], kwargs["allow_patterns"]))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    resolved = resolve_adapter(ModelSpec.parse("me/compass-lora@step-30"))
    assert calls[0][:2] == ("me/compass-lora", "step-30")
    assert "adapter_model.safetensors" in calls[0][2] and "*.safetensors" not in calls[0][2]
    assert resolved.directory == snapshot and resolved.commit == SHA
    assert resolved.ref.key == f"me/compass-lora@{SHA}"  # votes name the exact commit, not the branch
    assert resolved.base_model == trained_run.recipe.config.model


def test_an_unreachable_hub_adapter_says_what_to_do():
    # HF_HUB_OFFLINE=1 in tests: nothing is downloaded and the error names the way out.
    with pytest.raises(ModelError, match="local adapter directory"):
        resolve_adapter(ModelSpec.parse("me/never-downloaded@main"))


def test_eval_command(trained_run, heldout_file, tmp_path, capsys):
    output = tmp_path / "report.json"
    code = main(
        [
            "eval",
            "--adapter",
            str(trained_run.adapter_dir),
            "--dataset",
            str(heldout_file),
            "--max-examples",
            "4",
            "--max-new-tokens",
            "12",
            "--batch-size",
            "2",
            "--metrics",
            "perplexity,chrf,stop_rate",
            "--output",
            str(output),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| Metric | base | adapter | Change |" in printed and str(output) in printed
    report = EvaluationReport.read(output)
    assert report.num_examples == 4 and report.gen_params.max_new_tokens == 12
    assert set(report.results["adapter"]) == {"perplexity", "mean_nll", "scored_tokens", "chrf", "stop_rate"}
    assert report.base_model == trained_run.recipe.config.model  # read from adapter_config.json


def test_eval_command_errors_are_readable(heldout_file, tmp_path, capsys):
    assert main(["eval", "--dataset", str(heldout_file)]) == 2
    assert "--base-model" in capsys.readouterr().err
    assert main(["eval", "--adapter", str(tmp_path), "--dataset", str(heldout_file)]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    assert main(["eval", "--adapter", "x/y", "--dataset", str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_compare_command_base_against_adapter(trained_run, heldout_file, tmp_path, capsys):
    votes, output = tmp_path / "votes.jsonl", tmp_path / "compare.json"
    argv = [
        "compare",
        "base",
        str(trained_run.adapter_dir),
        "--dataset",
        str(heldout_file),
        "--max-examples",
        "6",
        "--max-new-tokens",
        "16",
        "--votes",
        str(votes),
        "--output",
        str(output),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads(output.read_text())
    summary = data["summary"]
    assert summary["a"] == "base" and summary["b"] == str(Path(trained_run.adapter_dir).resolve())
    assert summary["a_wins"] + summary["b_wins"] + summary["ties"] == 6
    assert f"A wins {summary['a_wins']}, B wins {summary['b_wins']}, ties {summary['ties']}" in printed
    assert "95% Wilson CI" in printed
    assert len(read_votes(votes)) == 6
    assert main(argv) == 0  # votes are appended, never overwritten
    assert len(read_votes(votes)) == 12


def test_eval_and_compare_hub_adapters_at_revisions(hub, hub_repo_id, trained_run, heldout_file, tmp_path, capsys):
    """Adapters pushed to the local Hub: a branch per checkpoint, resolved to the commit they point at."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(hub_repo_id)
    api.upload_folder(folder_path=trained_run.adapter_dir, repo_id=hub_repo_id)
    api.create_branch(hub_repo_id, branch="step-15")
    api.upload_folder(folder_path=trained_run.output_dir / "checkpoint-15", repo_id=hub_repo_id, revision="step-15")
    step_15 = api.model_info(hub_repo_id, revision="step-15").sha
    main_sha = api.model_info(hub_repo_id).sha

    resolved = resolve_adapter(ModelSpec.parse(f"{hub_repo_id}@step-15"))
    assert resolved.commit == step_15 and (resolved.directory / "adapter_model.safetensors").is_file()
    assert not (resolved.directory / "optimizer.pt").exists()  # only the adapter's files are downloaded

    output = tmp_path / "hub_eval.json"
    common = ["--dataset", str(heldout_file), "--max-examples", "3", "--max-new-tokens", "8", "--no-progress"]
    assert (
        main(["eval", "--adapter", f"{hub_repo_id}@step-15", "--metrics", "chrf", "--output", str(output), *common])
        == 0
    )
    report = EvaluationReport.read(output)
    assert (report.adapter, report.adapter_revision) == (hub_repo_id, step_15)

    assert main(["compare", f"{hub_repo_id}@step-15", hub_repo_id, "--output", str(tmp_path / "c.json"), *common]) == 0
    summary = json.loads((tmp_path / "c.json").read_text())["summary"]
    assert summary["a"] == f"{hub_repo_id}@{step_15}" and summary["b"] == f"{hub_repo_id}@{main_sha}"
    capsys.readouterr()
