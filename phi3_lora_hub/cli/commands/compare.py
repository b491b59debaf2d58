"""``phi3-lora-hub compare A B``: automatic pairwise comparison of two models on the same prompts."""

from __future__ import annotations

import argparse

from phi3_lora_hub.cli.commands.eval import (
    add_data_arguments,
    add_generation_arguments,
    cli_gen_params,
    load_cli_examples,
    quiet_metric_logs,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two models (base, adapter directory, Hub repo) on the same prompts",
        description=(
            "Answer every prompt with model A and model B (each 'base', an adapter directory, or a Hub repo "
            "namespace/name[@revision]) with the same settings, pick a winner per prompt by a reference metric, and "
            "report A's win rate with a 95% Wilson interval and the prompts where they differ most."
        ),
    )
    parser.add_argument("model_a", metavar="A", help="'base', adapter directory, or namespace/name[@revision]")
    parser.add_argument("model_b", metavar="B", help="'base', adapter directory, or namespace/name[@revision]")
    parser.add_argument(
        "--judge-metric",
        default="chrf",
        choices=("chrf", "rougeL", "bleu", "exact_match"),
        help="sentence-level metric against the reference answer that picks the winner (default chrf)",
    )
    parser.add_argument("--tie-margin", type=float, default=0.0, help="scores this close are a tie (default 0)")
    parser.add_argument("--top", type=int, default=5, help="how many most-different prompts to show (default 5)")
    parser.add_argument("--output", help="write the full comparison as JSON to this file")
    parser.add_argument(
        "--votes", help="append one automatic vote per prompt to this JSONL file (the Space leaderboard's format)"
    )
    add_data_arguments(parser)
    add_generation_arguments(parser, max_new_tokens=64)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.arena.compare import MetricJudge, compare_models
    from phi3_lora_hub.arena.votes import append_votes

    quiet_metric_logs()
    judge = MetricJudge(args.judge_metric, args.tie_margin)
    examples, source = load_cli_examples(args)
    report = compare_models(
        args.model_a,
        args.model_b,
        examples,
        dataset=source,
        gen_params=cli_gen_params(args),
        judge=judge,
        base_model=args.base_model,
        base_revision=args.base_revision,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print(report.render(top=args.top))
    if args.output:
        print(f"\ncomparison: {report.write(args.output)}")
    if args.votes:
        count = append_votes(args.votes, report.to_votes())
        print(f"votes: {count} automatic votes appended to {args.votes}")
    return 0
