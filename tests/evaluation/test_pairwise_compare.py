"""Automatic pairwise comparison: judging rules, and compare on two tiny adapters trained to differ."""

from __future__ import annotations

import pytest
from sacrebleu.metrics import CHRF

from phi3_lora_hub.arena.compare import Judgement, MetricJudge, compare_models, judge_pair
from phi3_lora_hub.arena.ratings import wilson_interval
from phi3_lora_hub.arena.votes import read_votes
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.evaluation.data import EvalExample

EXAMPLE = EvalExample(
    prompt=[{"role": "user", "content": "Capital of Peru?"}],
    reference="The capital of Peru is Lima.",
    conversation=[],
)


class LeftLovingJudge:
    """A judge with pure position bias: whatever is shown first wins."""

    name = "left-loving"
    order_sensitive = True

    def describe(self):
        return {"name": self.name, "order_sensitive": True}

    def judge(self, prompt, reference, left, right):
        return Judgement("left")


class LengthJudge(LeftLovingJudge):
    """An order-sensitive judge that is consistent: the longer answer wins whatever its position."""

    name = "length"

    def judge(self, prompt, reference, left, right):
        return Judgement("left" if len(left) > len(right) else "right" if len(right) > len(left) else "tie")


def test_metric_judge_prefers_the_answer_closer_to_the_reference():
    judge = MetricJudge("chrf")
    winner, judgements = judge_pair(judge, EXAMPLE, "The capital of Peru is Lima.", "Peru is in South America.")
    assert winner == "a" and len(judgements) == 1  # order cannot matter: judged once
    assert judgements[0].left_score == pytest.approx(100.0)
    assert judge_pair(judge, EXAMPLE, "Lima", "Lima")[0] == "tie"
    assert judge_pair(MetricJudge("chrf", tie_margin=100), EXAMPLE, "Lima", "Peru")[0] == "tie"
    assert judge_pair(MetricJudge("exact_match"), EXAMPLE, "Lima", "The capital of Peru is Lima.")[0] == "b"
    with pytest.raises(ConfigError, match="chrf"):
        MetricJudge("chrF")


def test_order_sensitive_judges_are_asked_both_ways():
    winner, judgements = judge_pair(LeftLovingJudge(), EXAMPLE, "Lima", "Peru")
    assert winner == "tie" and [j.verdict for j in judgements] == ["left", "left"]  # the verdicts disagree
    winner, judgements = judge_pair(LengthJudge(), EXAMPLE, "Lima, Peru", "Lima")
    assert winner == "a" and [j.verdict for j in judgements] == ["left", "right"]


@pytest.fixture(scope="module")
def comparison(trained_run, second_adapter, heldout_file):
    from phi3_lora_hub.evaluation.data import load_examples

    examples, source = load_examples(str(heldout_file), max_examples=8)
    report = compare_models(
        str(trained_run.adapter_dir),
        str(second_adapter),
        examples,
        dataset=source,
        gen_params=chat_generation_config(max_new_tokens=24),
        batch_size=4,
        progress=False,
    )
    return report, examples


def test_compare_two_adapters(comparison, trained_run, second_adapter):
    report, examples = comparison
    record = report.record
    assert record.n == len(examples) == 8
    assert report.model_a.repo == str(trained_run.adapter_dir.resolve())
    assert report.model_b.repo == str(second_adapter.resolve())
    # The adapters were trained differently, and it shows.
    assert any(o.answer_a != o.answer_b for o in report.outcomes)
    assert set(report.metrics_a) == set(report.metrics_b) >= {"chrf", "rougeL", "stop_rate"}
    chrf = CHRF()
    for outcome, example in zip(report.outcomes, examples, strict=True):
        score_a = chrf.sentence_score(outcome.answer_a, [example.reference]).score
        score_b = chrf.sentence_score(outcome.answer_b, [example.reference]).score
        assert (outcome.score_a, outcome.score_b) == pytest.approx((score_a, score_b))
        assert outcome.winner == ("a" if score_a > score_b else "b" if score_b > score_a else "tie")
    summary = report.summary()
    assert summary["a_win_rate"] == pytest.approx((record.wins + 0.5 * record.ties) / 8)
    assert summary["a_win_rate_ci95"] == list(wilson_interval(record.wins + 0.5 * record.ties, 8))
    top = report.top_differences(3)
    gaps = [o.difference for o in top]
    assert gaps == sorted(gaps, reverse=True) and all(o.answer_a != o.answer_b for o in top)


def test_compare_answers_are_each_adapters_own(comparison, trained_run, second_adapter, tiny_model_dir):
    """Loading both adapters on one base and switching gives what each adapter gives when loaded alone."""
    from phi3_lora_hub.generation import generate_replies
    from phi3_lora_hub.model.loading import load_for_inference

    report, examples = comparison
    prompts = [example.prompt for example in examples]
    for adapter, answers in ((trained_run.adapter_dir, "answer_a"), (second_adapter, "answer_b")):
        model, tokenizer = load_for_inference(str(tiny_model_dir), adapter)
        alone = generate_replies(model, tokenizer, prompts, chat_generation_config(max_new_tokens=24), batch_size=4)
        assert [g.text for g in alone] == [getattr(o, answers) for o in report.outcomes]


def test_compare_writes_automatic_votes(comparison, tmp_path):
    from phi3_lora_hub.arena.votes import append_votes, to_battles

    report, _ = comparison
    path = tmp_path / "votes.jsonl"
    append_votes(path, report.to_votes())
    votes = read_votes(path)
    assert len(votes) == 8
    assert {v.source for v in votes} == {"automatic"} and {v.session_hash for v in votes} == {""}
    winners = [{"a": "model_a", "b": "model_b", "tie": "tie"}[o.winner] for o in report.outcomes]
    assert [v.winner for v in votes] == winners
    first = votes[0]
    assert first.left.model == report.model_a and first.right.model == report.model_b
    assert first.left.answer == report.outcomes[0].answer_a
    assert first.left.messages[:-1] == report.outcomes[0].prompt
    assert first.judge["metric"] == "chrf" and first.judge["left_score"] == report.outcomes[0].score_a
    assert first.gen_params.max_new_tokens == 24
    assert all(b["judge"] == "automatic:chrf" for b in to_battles(votes))


def test_compare_refuses_the_same_model_twice(trained_run, heldout_file):
    with pytest.raises(ConfigError, match="same model"):
        compare_models(
            str(trained_run.adapter_dir),
            str(trained_run.adapter_dir) + "/",
            [EXAMPLE],
            dataset="x",
            gen_params=chat_generation_config(),
        )
