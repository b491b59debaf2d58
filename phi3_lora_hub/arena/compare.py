"""Automatic pairwise comparison of two models on the same prompts with the same settings.

Both models (``base``, an adapter directory, or a Hub adapter ``namespace/name[@revision]``) answer every
prompt; a judge picks a winner per prompt; the result is a win rate with a 95% Wilson interval, the prompts
where the two differ most, and optionally vote records (``source="automatic"``) the Space leaderboard reads.

The default judge scores each answer against the reference answer with a sentence-level metric (chrF): the
answer with the higher score wins, equal scores (within ``tie_margin``) tie. Such a judge sees each answer on
its own, so presentation order cannot matter and each prompt is judged once. A judge that sees both answers at
once (an LLM judge, say) may prefer a position: those declare ``order_sensitive = True`` and are asked twice,
with the answers in both orders; when the two verdicts disagree the prompt is a tie (MT-bench's rule).
"""

from __future__ import annotations

import difflib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from transformers import GenerationConfig

from phi3_lora_hub.arena.ratings import WinRecord
from phi3_lora_hub.arena.votes import SideRecord, VoteRecord
from phi3_lora_hub.decoding import describe_decoding, settings_of
from phi3_lora_hub.errors import ConfigError, unknown_key_error
from phi3_lora_hub.evaluation.data import EvalExample
from phi3_lora_hub.evaluation.metrics import GENERATION_METRICS, combine_metrics
from phi3_lora_hub.evaluation.models import ModelSpec, active_adapter, common_base, load_with_adapters, resolve_adapter
from phi3_lora_hub.evaluation.scoring import SENTENCE_SCORERS
from phi3_lora_hub.generation import Reply, generate_replies
from phi3_lora_hub.model.identity import ModelRef

Verdict = Literal["left", "right", "tie"]
Winner = Literal["a", "b", "tie"]
COMPARE_FILE = "compare_results.json"


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict on one presentation of two answers, with each answer's score when it has one."""

    verdict: Verdict
    left_score: float | None = None
    right_score: float | None = None


class Judge(Protocol):
    """Decides which of two answers to the same prompt is better."""

    name: str
    order_sensitive: bool
    """True when the verdict may depend on which answer is shown first (then both orders are asked)."""

    def describe(self) -> dict[str, Any]: ...

    def judge(self, prompt: Sequence[dict[str, str]], reference: str | None, left: str, right: str) -> Judgement: ...


class MetricJudge:
    """Scores each answer against the reference with a sentence-level metric; the higher score wins.

    ``metric`` is one of ``chrf`` (default: robust on short answers), ``rougeL``, ``bleu``, ``exact_match``.
    Scores within ``tie_margin`` of each other tie.
    """

    order_sensitive = False

    def __init__(self, metric: str = "chrf", tie_margin: float = 0.0) -> None:
        if metric not in SENTENCE_SCORERS:
            raise unknown_key_error("judge metric", metric, tuple(SENTENCE_SCORERS))
        if tie_margin < 0:
            raise ConfigError(f"tie_margin must be >= 0, got {tie_margin}.")
        self.metric = metric
        self.tie_margin = tie_margin
        self.name = f"metric:{metric}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": f"sentence {self.metric} of each answer against the reference answer",
            "metric": self.metric,
            "tie_margin": self.tie_margin,
            "order_sensitive": False,
        }

    def judge(self, prompt: Sequence[dict[str, str]], reference: str | None, left: str, right: str) -> Judgement:
        if reference is None:
            raise ConfigError("The metric judge needs a reference answer for every prompt.")
        left_score, right_score = SENTENCE_SCORERS[self.metric]([left, right], [reference, reference])
        if abs(left_score - right_score) <= self.tie_margin:
            return Judgement("tie", left_score, right_score)
        return Judgement("left" if left_score > right_score else "right", left_score, right_score)


def judge_pair(judge: Judge, example: EvalExample, answer_a: str, answer_b: str) -> tuple[Winner, list[Judgement]]:
    """The winner of A against B on one prompt, asking an order-sensitive judge in both orders."""
    first = judge.judge(example.prompt, example.reference, answer_a, answer_b)
    winner: Winner = {"left": "a", "right": "b", "tie": "tie"}[first.verdict]  # type: ignore[assignment]
    if not judge.order_sensitive:
        return winner, [first]
    second = judge.judge(example.prompt, example.reference, answer_b, answer_a)
    swapped: Winner = {"left": "b", "right": "a", "tie": "tie"}[second.verdict]  # type: ignore[assignment]
    return (winner if winner == swapped else "tie"), [first, second]


@dataclass
class PromptOutcome:
    """Both answers to one prompt and who won."""

    index: int
    prompt: list[dict[str, str]]
    reference: str | None
    answer_a: str
    answer_b: str
    winner: Winner
    score_a: float | None
    score_b: float | None
    finish_a: str
    finish_b: str
    new_tokens_a: int
    new_tokens_b: int
    latency_a: float
    latency_b: float
    verdicts: list[str] = field(default_factory=list)
    """The judge's raw verdicts, one per presentation order (``left``/``right``/``tie``)."""

    @property
    def difference(self) -> float:
        """How far apart the answers are: the score gap, or the text dissimilarity when there are no scores."""
        if self.score_a is not None and self.score_b is not None:
            return abs(self.score_a - self.score_b)
        return 1.0 - difflib.SequenceMatcher(None, self.answer_a, self.answer_b).ratio()


@dataclass
class CompareReport:
    """The outcome of ``compare``: per-prompt winners, the win rate of A with its interval, corpus metrics."""

    model_a: ModelRef
    model_b: ModelRef
    dataset: str
    gen_params: GenerationConfig
    judge: dict[str, Any]
    outcomes: list[PromptOutcome]
    metrics_a: dict[str, float] = field(default_factory=dict)
    metrics_b: dict[str, float] = field(default_factory=dict)
    base_model: str | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def record(self) -> WinRecord:
        """A's wins, losses and ties against B."""
        wins = sum(o.winner == "a" for o in self.outcomes)
        losses = sum(o.winner == "b" for o in self.outcomes)
        return WinRecord(wins, losses, len(self.outcomes) - wins - losses)

    def top_differences(self, count: int = 5) -> list[PromptOutcome]:
        """The ``count`` prompts where the answers differ most (identical answers never listed)."""
        differing = [o for o in self.outcomes if o.answer_a != o.answer_b]
        return sorted(differing, key=lambda o: (-o.difference, o.index))[:count]

    def summary(self) -> dict[str, Any]:
        record = self.record
        low, high = record.interval()
        return {
            "a": self.model_a.key,
            "b": self.model_b.key,
            "prompts": record.n,
            "a_wins": record.wins,
            "b_wins": record.losses,
            "ties": record.ties,
            "a_win_rate": record.win_rate,
            "a_win_rate_ci95": [low, high],
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gen_params"] = settings_of(self.gen_params)
        data["summary"] = self.summary()
        return data

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / COMPARE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def to_votes(self) -> list[VoteRecord]:
        """One automatic vote per prompt, A on the left, in the Space's vote schema."""
        votes = []
        for outcome in self.outcomes:
            system = next((m["content"] for m in outcome.prompt if m["role"] == "system"), None)
            sides = []
            for ref, answer, finish, tokens, latency in (
                (self.model_a, outcome.answer_a, outcome.finish_a, outcome.new_tokens_a, outcome.latency_a),
                (self.model_b, outcome.answer_b, outcome.finish_b, outcome.new_tokens_b, outcome.latency_b),
            ):
                messages = [*outcome.prompt, {"role": "assistant", "content": answer}]
                sides.append(SideRecord(ref, messages, latency, tokens, finish))  # type: ignore[arg-type]
            vote = {"a": "leftvote", "b": "rightvote", "tie": "tievote"}[outcome.winner]
            votes.append(
                VoteRecord(
                    left=sides[0],
                    right=sides[1],
                    vote=vote,  # type: ignore[arg-type]
                    gen_params=self.gen_params,
                    system_prompt=system,
                    source="automatic",
                    conv_id=uuid.uuid4().hex,
                    tstamp=self.created_at,
                    judge={
                        **self.judge,
                        "left_score": outcome.score_a,
                        "right_score": outcome.score_b,
                        "verdicts": outcome.verdicts,
                        "reference": outcome.reference,
                    },
                )
            )
        return votes

    def render(self, top: int = 5, width: int = 48) -> str:
        """A plain-text summary for the terminal: the record, the metrics side by side, the biggest differences."""
        s = self.summary()
        low, high = s["a_win_rate_ci95"]
        params = self.gen_params
        decoding = describe_decoding(params)
        judge = self.judge
        lines = [
            f"A: {s['a']}",
            f"B: {s['b']}",
            f"{s['prompts']} prompts of {self.dataset}; {decoding}, max_new_tokens {params.max_new_tokens}, "
            f"seed {getattr(params, 'seed', None)}; judge: {judge.get('description', judge['name'])}"
            + (f" (tie within {judge['tie_margin']})" if judge.get("tie_margin") else "")
            + ("; both orders" if judge.get("order_sensitive") else ""),
            "",
            f"A wins {s['a_wins']}, B wins {s['b_wins']}, ties {s['ties']}: "
            f"A's win rate {s['a_win_rate']:.3f} (95% Wilson CI {low:.3f}-{high:.3f}; ties count half)",
        ]
        if self.metrics_a:
            lines += ["", f"{'metric':<20}{'A':>10}{'B':>10}"]
            for key, value in self.metrics_a.items():
                lines.append(f"{key:<20}{value:>10.3f}{self.metrics_b.get(key, float('nan')):>10.3f}")
        differing = self.top_differences(top)
        if differing:
            score = judge.get("metric", "score")
            lines += ["", f"Where they differ most (by {score} gap):"]
            lines.append(f"{'#':>3}  {'winner':<6} {score + ' A/B':<13} {'prompt':<{width}}")
            for o in differing:
                scores = f"{o.score_a:.1f}/{o.score_b:.1f}" if o.score_a is not None else "-"
                question = " → ".join(m["content"] for m in o.prompt if m["role"] == "user")
                lines.append(f"{o.index:>3}  {o.winner:<6} {scores:<13} {_clip(question, width)}")
                lines.append(f"{'':>5}A: {_clip(o.answer_a, width + 16)}")
                lines.append(f"{'':>5}B: {_clip(o.answer_b, width + 16)}")
        return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def judge_all(
    judge: Judge, examples: Sequence[EvalExample], answers_a: Sequence[Reply], answers_b: Sequence[Reply]
) -> list[PromptOutcome]:
    """Judge every prompt; ``answers_a[i]`` and ``answers_b[i]`` answer ``examples[i]``."""
    outcomes = []
    for index, (example, a, b) in enumerate(zip(examples, answers_a, answers_b, strict=True)):
        winner, judgements = judge_pair(judge, example, a.text, b.text)
        first = judgements[0]
        outcomes.append(
            PromptOutcome(
                index=index,
                prompt=list(example.prompt),
                reference=example.reference,
                answer_a=a.text,
                answer_b=b.text,
                winner=winner,
                score_a=first.left_score,
                score_b=first.right_score,
                finish_a=a.finish_reason,
                finish_b=b.finish_reason,
                new_tokens_a=a.new_tokens,
                new_tokens_b=b.new_tokens,
                latency_a=a.latency_s,
                latency_b=b.latency_s,
                verdicts=[j.verdict for j in judgements],
            )
        )
    return outcomes


def compare_models(
    spec_a: str,
    spec_b: str,
    examples: Sequence[EvalExample],
    *,
    dataset: str,
    gen_params: GenerationConfig,
    judge: Judge | None = None,
    base_model: str | None = None,
    base_revision: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> CompareReport:
    """Load both models on one base, answer every prompt with each, judge, and return the report.

    ``spec_a``/``spec_b`` are ``base``, an adapter directory, or ``namespace/name[@revision]``. The base model is
    ``base_model``, else the one named in the adapters' ``adapter_config.json``.
    """

    judge = judge or MetricJudge()
    specs = {"a": ModelSpec.parse(spec_a), "b": ModelSpec.parse(spec_b)}
    if specs["a"] == specs["b"]:
        raise ConfigError(f"A and B are the same model ({specs['a']}): compare two different ones.")
    if not examples:
        raise ConfigError("No prompts to compare on.")
    adapters = {name: resolve_adapter(spec) for name, spec in specs.items() if spec.kind != "base"}
    if adapters:
        base = common_base(list(adapters.values()), base_model)
    elif base_model:
        base = base_model
    else:
        raise ConfigError("Nothing to compare the base model with.")
    model, tokenizer = load_with_adapters(base, adapters, revision=base_revision)
    answers: dict[str, list[Reply]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for name in ("a", "b"):
        with active_adapter(model, name if name in adapters else None):
            answers[name] = generate_replies(
                model,
                tokenizer,
                [example.prompt for example in examples],
                gen_params,
                batch_size=batch_size,
                progress=progress,
                description=f"Generating ({name.upper()})",
            )
        metrics[name] = combine_metrics(GENERATION_METRICS).compute(
            predictions=[g.raw_text for g in answers[name]],
            references=[example.reference for example in examples],
            tokenizer=tokenizer,
        )
    refs = {name: adapters[name].ref if name in adapters else ModelRef.base() for name in ("a", "b")}
    return CompareReport(
        model_a=refs["a"],
        model_b=refs["b"],
        dataset=dataset,
        gen_params=gen_params,
        judge=judge.describe(),
        outcomes=judge_all(judge, examples, answers["a"], answers["b"]),
        metrics_a=metrics["a"],
        metrics_b=metrics["b"],
        base_model=base,
    )
