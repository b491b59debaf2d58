"""recipe.evaluate() and the report written after training, on the tiny model."""

from __future__ import annotations

import json
import math

import pytest

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.report import EvaluationReport
from phi3_lora_hub.run_file_names import EVAL_REPORT_FILE

GENERATION_KEYS = {
    "rougeL",
    "chrf",
    "bleu",
    "exact_match",
    "mean_answer_words",
    "mean_answer_chars",
    "mean_answer_tokens",
    "stop_rate",
}


def test_training_writes_the_report_next_to_the_adapter(trained_run):
    path = trained_run.adapter_dir / EVAL_REPORT_FILE
    report = EvaluationReport.read(path)
    assert report.labels == ["base", "adapter"]
    assert report.adapter == str(trained_run.adapter_dir)
    assert report.num_examples == 8
    assert report.gen_params.max_new_tokens == 24 and report.batch_size == 4
    assert "held out" in report.dataset
    for label in ("base", "adapter"):
        metrics = report.results[label]
        assert set(metrics) == GENERATION_KEYS | {"perplexity", "mean_nll", "scored_tokens"}
        assert metrics["perplexity"] == pytest.approx(math.exp(metrics["mean_nll"]))
        assert 0 <= metrics["stop_rate"] <= 1 and 0 <= metrics["rougeL"] <= 1
    # Same held-out answers for both, and training lowers the loss on them.
    assert report.results["base"]["scored_tokens"] == report.results["adapter"]["scored_tokens"]
    assert report.results["adapter"]["perplexity"] < report.results["base"]["perplexity"]
    assert len(report.samples) == 2 and set(report.samples[0].answers) == {"base", "adapter"}
    # The file is plain JSON with the documented top-level keys.
    data = json.loads(path.read_text())
    assert {"format_version", "base_model", "adapter", "results", "samples", "gen_params", "versions"} <= set(data)


def test_report_numbers_are_the_saved_adapters_numbers(trained_run, tiny_model_dir):
    """Reload the saved adapter from disk and recompute its perplexity on the report's examples."""
    from phi3_lora_hub.evaluation.data import conversations_from_token_ids, examples_from_conversations
    from phi3_lora_hub.evaluation.perplexity import assistant_perplexity
    from phi3_lora_hub.model.loading import load_for_inference

    report = EvaluationReport.read(trained_run.adapter_dir)
    recipe = trained_run.recipe
    rows = recipe.data.eval.select(range(8))["input_ids"]
    examples = examples_from_conversations(conversations_from_token_ids(recipe.load_tokenizer(), rows))
    model, tokenizer = load_for_inference(str(tiny_model_dir), trained_run.adapter_dir)
    direct = assistant_perplexity(model, tokenizer, [e.conversation for e in examples])
    assert direct.perplexity == pytest.approx(report.results["adapter"]["perplexity"], rel=1e-4)
    assert [s.reference for s in report.samples] == [e.reference for e in examples[:2]]


def test_report_table_and_model_index(trained_run):
    report = EvaluationReport.read(trained_run.adapter_dir)
    table = report.markdown_table()
    assert table.splitlines()[0] == "| Metric | base | adapter | Change |"
    assert "Perplexity (answer tokens) ↓" in table and "Stop rate ↑" in table
    adapter_ppl = report.results["adapter"]["perplexity"]
    assert f"{adapter_ppl:.2f}" in table or f"{adapter_ppl:.3f}" in table
    entries = report.eval_results(dataset_type="compass-sample")
    by_metric = {entry.metric_type: entry for entry in entries}
    assert by_metric["chrf"].metric_value == round(report.results["adapter"]["chrf"], 4)
    assert by_metric["perplexity"].task_type == "text-generation"
    assert all(entry.dataset_type == "compass-sample" for entry in entries)


def test_report_round_trip_keeps_infinite_perplexity(tmp_path, trained_run):
    report = EvaluationReport.read(trained_run.adapter_dir)
    report.results["base"]["perplexity"] = math.inf
    path = report.write(tmp_path)
    assert json.loads(path.read_text())["results"]["base"]["perplexity"] is None
    assert EvaluationReport.read(path).results["base"]["perplexity"] == math.inf
    assert "∞" in EvaluationReport.read(path).markdown_table()


def test_evaluate_a_saved_adapter_on_another_dataset(trained_run, heldout_file, tmp_path, tiny_model_dir):
    from phi3_lora_hub import Phi3LoraRecipe

    # A fresh recipe (nothing trained in this process) finds the adapter saved in output_dir.
    recipe = Phi3LoraRecipe(str(tiny_model_dir), str(heldout_file), output_dir=str(trained_run.output_dir))
    output = tmp_path / "heldout_eval.json"
    report = recipe.evaluate(
        dataset=str(heldout_file),
        output=output,
        include_base=False,
        max_examples=4,
        max_new_tokens=12,
        metrics=["chrf", "stop_rate"],
        progress=False,
    )
    assert output.is_file()
    assert report.labels == ["adapter"] and set(report.results["adapter"]) == {"chrf", "stop_rate"}
    assert report.dataset == "heldout.jsonl" and report.num_examples == 4
    assert report.adapter == str(trained_run.adapter_dir.resolve())


def test_evaluate_refuses_unknown_settings_and_missing_data(tiny_model_dir, tmp_path):
    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.data.sample import sample_conversations

    with pytest.raises(ConfigError, match="num_samples"):
        Phi3LoraRecipe(str(tiny_model_dir), sample_conversations(4), evaluation={"num_sample": 2})
    with pytest.raises(ConfigError, match=r"evaluation\.max_new_tokens must be at least 1"):
        Phi3LoraRecipe(str(tiny_model_dir), sample_conversations(4), evaluation={"max_new_tokens": 0})
    with pytest.raises(ConfigError, match="rouge_l"):
        Phi3LoraRecipe(str(tiny_model_dir), sample_conversations(4), evaluation={"metrics": ["rouge"]})
    recipe = Phi3LoraRecipe(str(tiny_model_dir), sample_conversations(8), output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="No evaluation data"):
        recipe.evaluate(progress=False)


def test_evaluation_settings_round_trip_through_yaml(tiny_model_dir, tmp_path):
    from phi3_lora_hub import Phi3LoraRecipe

    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}\n')
    recipe = Phi3LoraRecipe(str(tiny_model_dir), str(data), evaluation={"num_samples": 5, "sample_prompts": ["Hi?"]})
    recipe.to_yaml(tmp_path / "recipe.yaml")
    again = Phi3LoraRecipe.from_yaml(tmp_path / "recipe.yaml", ["evaluation.max_examples=7"])
    assert again.config.evaluation == {**recipe.config.evaluation, "max_examples": 7}
