"""Model cards: YAML metadata, step-awareness, evaluation and samples when present, custom templates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from phi3_lora_hub.cards import CardOptions, RunFiles, render_card, template_path, templates_dir, write_card
from phi3_lora_hub.cards.loss_curve import loss_points
from phi3_lora_hub.errors import ConfigError

REPO = "tester/phi3-cards"


def copy_of(source: Path, target: Path, *, model: str | None = None, dataset: str | None = None) -> Path:
    shutil.copytree(source, target)
    if model or dataset:
        recipe = yaml.safe_load((target / "phi3_lora_recipe.yaml").read_text())
        recipe.update({k: v for k, v in (("model", model), ("dataset", dataset)) if v})
        (target / "phi3_lora_recipe.yaml").write_text(yaml.safe_dump(recipe))
    return target


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_metadata_of_a_phi3_adapter(trained_run, tmp_path):
    directory = copy_of(
        trained_run / "checkpoint-4",
        tmp_path / "c4",
        model="microsoft/Phi-3-mini-4k-instruct",
        dataset="HuggingFaceH4/ultrachat_200k",
    )
    options = CardOptions(repo_id=REPO, branch="step-4", checkpoint=True, branches={2: "step-2", 4: "step-4"})
    card = render_card(directory, options)
    meta = front_matter(str(card))
    assert meta["base_model"] == "microsoft/Phi-3-mini-4k-instruct"
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "mit" and meta["datasets"] == ["HuggingFaceH4/ultrachat_200k"]
    assert {"phi3", "peft", "lora", "sft", "phi3-lora-hub"} <= set(meta["tags"])
    [index] = meta["model-index"]
    assert index["name"] == "phi3-cards"
    [result] = index["results"]
    assert result["task"]["type"] == "text-generation"
    assert result["dataset"]["type"] == "HuggingFaceH4/ultrachat_200k"
    [metric] = result["metrics"]
    assert metric["type"] == "loss" and isinstance(metric["value"], float)


def test_generated_cards_pass_hub_validation(hub, trained_run, tmp_path):
    for name in ("checkpoint-2", "checkpoint-6", "adapter"):
        directory = copy_of(trained_run / name, tmp_path / name, model="microsoft/Phi-3-mini-4k-instruct")
        card = write_card(directory, CardOptions(repo_id=REPO, endpoint=hub.url))
        card.validate()  # POST /api/validate-yaml on HF_ENDPOINT (the local hub); raises ValueError when invalid
    assert [r.status for r in hub.requests if r.path == "/api/validate-yaml"] == [200, 200, 200]


def test_each_card_describes_its_own_step(trained_run, tmp_path):
    texts = {}
    for step in (2, 4):
        directory = copy_of(trained_run / f"checkpoint-{step}", tmp_path / str(step))
        branches = {2: "step-2", 4: "step-4", 6: "step-6"}
        options = CardOptions(repo_id=REPO, branch=f"step-{step}", checkpoint=True, branches=branches)
        texts[step] = str(write_card(directory, options))
        history = RunFiles.read(directory).log_history
        assert max(step for step, _ in loss_points(history, "loss")) == step  # the curve ends at the card's step
        assert (directory / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    assert "This card describes the checkpoint at step 2." in texts[2]
    assert "The checkpoint saved at step 2, pushed while training ran. Branch [`step-2`]" in texts[2]
    assert 'revision="step-2"' in texts[2]
    assert "/tree/step-2" in texts[2] and "/tree/step-4" not in texts[2]  # no checkpoint from its future
    assert "| Step | 4 |" in texts[4] and "/tree/step-4" in texts[4] and "/tree/step-6" not in texts[4]
    assert "![Loss curve](loss_curve.png)" in texts[2]


def test_the_final_card_shows_data_settings_results_and_versions(trained_run, tmp_path):
    directory = copy_of(trained_run / "adapter", tmp_path / "adapter")
    text = str(write_card(directory, CardOptions(repo_id=REPO, branches={2: "step-2", 4: "step-4", 6: "step-6"})))
    assert "This card describes the adapter after 6 training steps." in text
    assert "| Rows used | 40 | 8 |" in text  # 48 conversations, 8 held out
    assert "| `r` | 16 |" in text and "`qkv_proj`" in text
    assert "| `learning_rate` | 0.0001 |" in text and "| `max_steps` | 6 |" in text
    assert "Evaluation loss (assistant tokens)" in text
    assert "`<|end|>`" in text and "`<|endoftext|>`" in text
    assert "- transformers " in text and "- peft " in text
    assert 'model = PeftModel.from_pretrained(base, "tester/phi3-cards")' in text


def test_evaluation_report_and_sample_answers_appear_when_present(hub, trained_run, tmp_path):
    from phi3_lora_hub.evaluation.report import EvaluationReport
    from phi3_lora_hub.evaluation.samples import SampleGenerations

    directory = copy_of(trained_run / "adapter", tmp_path / "adapter", model="microsoft/Phi-3-mini-4k-instruct")
    report, samples = EvaluationReport.read(directory), SampleGenerations.read(directory)  # written by the run
    assert report is not None and samples is not None
    card = write_card(directory, CardOptions(repo_id=REPO, endpoint=hub.url))
    text = str(card)
    assert "### Evaluation: base model vs adapter" in text and report.markdown_table() in text
    assert "### Sample answers up to step 6" in text and samples.markdown(last=3) in text
    expected = {entry.metric_type: entry.metric_value for entry in report.eval_results()}
    metrics = {m["type"]: m["value"] for m in front_matter(text)["model-index"][0]["results"][0]["metrics"]}
    assert metrics == expected and "perplexity" in metrics  # the card's table and metadata agree
    card.validate()

    checkpoint = copy_of(trained_run / "checkpoint-2", tmp_path / "c2")
    text = str(write_card(checkpoint, CardOptions(repo_id=REPO, branch="step-2", checkpoint=True)))
    assert "### Sample answers up to step 2" in text and "- step 4" not in text  # the checkpoint's own answers
    assert "### Evaluation" not in text  # evaluated only after training


def test_a_bare_adapter_and_damaged_reports_still_give_a_valid_card(hub, trained_run, tmp_path, caplog):
    directory = tmp_path / "bare"
    directory.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(trained_run / "adapter" / name, directory / name)
    (directory / "eval_results.json").write_text("{not json")
    (directory / "sample_generations.json").write_text('{"format_version": 1}')
    card = write_card(directory, CardOptions(repo_id=REPO, endpoint=hub.url))
    card.validate()
    text = str(card)
    assert "No data report was saved with this adapter." in text
    assert not (directory / "loss_curve.png").exists() and "![Loss curve]" not in text
    ignored = " ".join(record.getMessage() for record in caplog.records if "ignoring" in record.getMessage())
    assert "eval_results.json" in ignored and "sample_generations.json" in ignored


def test_a_custom_template(trained_run, tmp_path):
    template = tmp_path / "mine.md.j2"
    template.write_text("---\n{{ card_data }}\n---\n# {{ title }} at step {{ step }}\n{{ stop_tokens }}\n")
    directory = copy_of(trained_run / "checkpoint-2", tmp_path / "c2")
    text = str(render_card(directory, CardOptions(repo_id=REPO), template))
    assert "# phi3-cards at step 2\n" in text and front_matter(text)["library_name"] == "peft"
    with pytest.raises(ConfigError, match="does not exist"):
        template_path(tmp_path / "missing.j2")


def test_the_bundled_template_is_found_in_the_package_and_in_the_checkout():
    bundled = templates_dir()
    assert (bundled / "phi3_lora_adapter.md.j2").is_file()
    checkout = Path(__file__).resolve().parents[2] / "model_card_templates" / "phi3_lora_adapter.md.j2"
    assert (bundled / "phi3_lora_adapter.md.j2").read_text() == checkout.read_text()


@pytest.mark.slow
def test_the_wheel_ships_the_templates_and_the_type_marker(tmp_path):
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    source = tmp_path / "source"  # build from a copy: a build leaves build/ and *.egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    for name in ("phi3_lora_hub", "model_card_templates", "space_app"):  # and the folders mapped into the package
        shutil.copytree(root / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "phi3_lora_hub/model_card_templates/phi3_lora_adapter.md.j2" in names
    assert "phi3_lora_hub/py.typed" in names  # type checkers read the package's annotations (PEP 561)


def test_a_checkpoint_card_names_the_data_each_number_was_measured_on(trained_run, tmp_path):
    """The evaluation loss of a checkpoint was measured on the 8 held-out rows, never on the training part."""
    directory = copy_of(trained_run / "checkpoint-2", tmp_path / "c2")
    options = CardOptions(repo_id=REPO, branch="step-2", checkpoint=True, branches={2: "step-2"})
    text = str(write_card(directory, options))
    report = RunFiles.read(directory).data_report
    held_out = report["eval"]
    assert "held out" in held_out["source"] and held_out["rows_used"] == 8
    measured_on = f"8 conversations of {held_out['source']} ({held_out['trained_tokens']} answer tokens)"
    assert f"| Evaluation loss and perplexity measured on | {measured_on} |" in text
    [result] = front_matter(text)["model-index"][0]["results"]
    assert result["dataset"]["name"] == measured_on
    assert "[train]" not in result["dataset"]["name"] and "[train]" not in result["dataset"]["type"]
    assert result["metrics"][0]["name"] == "Evaluation loss (assistant tokens)"


def test_a_card_shows_the_evaluation_settings_the_run_used(trained_run, tmp_path):
    """The recipe evaluates at every save when it has evaluation data: the card says so, not `eval_strategy: no`."""
    for name in ("checkpoint-2", "adapter"):
        text = str(write_card(copy_of(trained_run / name, tmp_path / name), CardOptions(repo_id=REPO)))
        assert "| `eval_strategy` | steps |" in text and "| `eval_steps` | 2 |" in text
        assert "| `eval_strategy` | no |" not in text


def test_the_evaluation_table_and_its_metadata_name_the_rows_they_were_computed_on(trained_run, tmp_path):
    from phi3_lora_hub.evaluation.report import EvaluationReport

    directory = copy_of(trained_run / "adapter", tmp_path / "adapter")
    report = EvaluationReport.read(directory)
    report.dataset, report.dataset_split, report.num_examples = "HuggingFaceH4/ultrachat_200k (test_sft)", "test_sft", 5
    report.write(directory)
    text = str(write_card(directory, CardOptions(repo_id=REPO)))
    assert "5 conversations of HuggingFaceH4/ultrachat_200k (test_sft); greedy" in text  # the split once
    [result] = front_matter(text)["model-index"][0]["results"]
    assert result["dataset"]["name"] == "5 conversations of HuggingFaceH4/ultrachat_200k (test_sft)"
    assert result["dataset"]["split"] == "test_sft"


def test_a_misspelt_variable_in_a_custom_template_is_an_error_naming_it(trained_run, tmp_path):
    """It used to render as empty text, silently publishing a card with a hole in it."""
    directory = copy_of(trained_run / "checkpoint-2", tmp_path / "c2")
    template = tmp_path / "typo.md.j2"
    template.write_text("---\n{{ card_data }}\n---\n# {{ title }}\n{{ samples_markdwn }}\n")
    with pytest.raises(ConfigError) as caught:
        render_card(directory, CardOptions(repo_id=REPO), template)
    message = str(caught.value)
    assert "'samples_markdwn' is undefined" in message and "Did you mean 'samples_markdown'?" in message
    assert str(template) in message
    template.write_text("---\n{{ card_data }}\n---\n{% for row in checkpoint_rows %}{{ row.stepp }}{% endfor %}\n")
    with pytest.raises(ConfigError, match="has no attribute 'stepp'"):  # an attribute typo is caught too
        render_card(directory, CardOptions(repo_id=REPO, branches={2: "step-2"}), template)
    template.write_text("---\n{{ card_data }}\n---\n{% if %}\n")
    with pytest.raises(ConfigError, match=r"typo.md.j2, line 4: "):
        render_card(directory, CardOptions(repo_id=REPO), template)
    template.write_text("---\n{{ card_data }}\n---\n{{ title }}{% if optional is defined %}{{ optional }}{% endif %}\n")
    assert "phi3-cards" in str(render_card(directory, CardOptions(repo_id=REPO), template))


def test_a_custom_template_is_checked_before_training_starts(tmp_path):
    """Not after hours of training, when the first card is written (the model does not even exist here)."""
    from phi3_lora_hub import Phi3LoraRecipe

    template = tmp_path / "typo.md.j2"
    template.write_text("---\n{{ card_data }}\n---\n# {{ tite }} {{ base_model }}\n")
    recipe = Phi3LoraRecipe("./no-such-model", [], hub_card_template=str(template))
    with pytest.raises(ConfigError, match="uses the variable 'tite', which cards do not define. Did you mean 'title'"):
        recipe.train()
    template.write_text("---\n{{ card_data }}\n---\n# {{ title }} {{ base_model }} {% for x in lora_rows %}{{ x }}")
    with pytest.raises(ConfigError, match="typo.md.j2, line 4"):
        recipe.train()
