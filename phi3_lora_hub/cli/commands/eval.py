"""``phi3-lora-hub eval``: evaluate an adapter (and its base model) on held-out chat data, write eval_results.json."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments choosing the evaluation data, shared by ``eval`` and ``compare``."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", required=True, help="local file (.jsonl/.json/.csv/.parquet) or Hub dataset id, any chat format"
    )
    group.add_argument("--split", help="split of a Hub dataset (e.g. test_sft)")
    group.add_argument("--dataset-config", help="configuration name of a Hub dataset")
    group.add_argument("--format", help="force a data format instead of detecting it (messages, sharegpt, alpaca, ...)")
    group.add_argument("--on-bad-rows", choices=("raise", "skip"), default="raise", help="default: raise")
    group.add_argument(
        "--max-examples", type=int, default=100, help="use the first N conversations (default 100; 0 = all)"
    )


def add_generation_arguments(parser: argparse.ArgumentParser, *, max_new_tokens: int) -> None:
    """Generation settings, identical for every model evaluated or compared."""
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"default {max_new_tokens}")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding (default)")
    group.add_argument("--top-p", type=float, default=1.0)
    group.add_argument("--repetition-penalty", type=float, default=1.0)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--batch-size", type=int, default=8, help="prompts generated together (default 8)")
    parser.add_argument("--base-model", help="base model id or directory (default: the one in adapter_config.json)")
    parser.add_argument("--base-revision", help="branch, tag or commit of the base model")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_cli_examples(args: argparse.Namespace):
    """The evaluation examples the data arguments select, and a description of their source."""
    from phi3_lora_hub.data.prepare import DataOptions
    from phi3_lora_hub.errors import ConfigError
    from phi3_lora_hub.evaluation.data import load_examples

    if args.max_examples < 0:
        raise ConfigError("--max-examples must be 0 (all) or more.")
    return load_examples(
        args.dataset,
        split=args.split,
        config_name=args.dataset_config,
        options=DataOptions(format=args.format, on_bad_rows=args.on_bad_rows),
        max_examples=args.max_examples or None,
    )


def cli_gen_params(args: argparse.Namespace):
    """The ``GenerationConfig`` of the generation flags; ``ConfigError`` naming a flag out of range."""
    from phi3_lora_hub.decoding import chat_generation_config
    from phi3_lora_hub.errors import ConfigError

    try:
        return chat_generation_config(
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            repetition_penalty=args.repetition_penalty,
            seed=args.seed,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None


def quiet_metric_logs() -> None:
    # rouge_score logs "Using default tokenizer." through absl at INFO on every scorer.
    logging.getLogger("absl").setLevel(logging.WARNING)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate an adapter and its base model on held-out data",
        description=(
            "Evaluate an adapter (a directory or a Hub repo namespace/name[@revision]) and, unless --no-base, its base "
            "model on held-out chat data: perplexity on answer tokens, ROUGE-L, chrF, BLEU, exact match, answer "
            "length and stop rate. Writes eval_results.json (the numbers of the model card)."
        ),
    )
    parser.add_argument("--adapter", help="adapter directory or Hub repo namespace/name[@revision]; omit for the base")
    parser.add_argument("--no-base", action="store_true", help="evaluate the adapter only")
    parser.add_argument(
        "--metrics",
        help="comma-separated subset of: perplexity, rouge_l, chrf, bleu, exact_match, answer_length, "
        "stop_rate (default: all)",
    )
    parser.add_argument("--samples", type=int, default=3, help="sample answers stored in the report (default 3)")
    parser.add_argument(
        "--output", help="report file (default: eval_results.json in a local adapter directory, else here)"
    )
    add_data_arguments(parser)
    add_generation_arguments(parser, max_new_tokens=128)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.errors import ConfigError
    from phi3_lora_hub.evaluation.metrics import METRICS
    from phi3_lora_hub.evaluation.runner import EvalSettings, evaluate_adapter
    from phi3_lora_hub.run_file_names import EVAL_REPORT_FILE

    quiet_metric_logs()
    if args.adapter is None and not args.base_model:
        raise ConfigError("Give --adapter (and optionally --base-model), or --base-model alone to evaluate the base.")
    metrics = tuple(name.strip() for name in args.metrics.split(",")) if args.metrics else METRICS
    settings = EvalSettings(
        gen_params=cli_gen_params(args),
        batch_size=args.batch_size,
        metrics=metrics,
        num_samples=args.samples,
        progress=not args.no_progress,
    )
    examples, source = load_cli_examples(args)
    report = evaluate_adapter(
        args.adapter,
        examples,
        settings,
        dataset=source,
        dataset_split=args.split,
        base_model=args.base_model,
        base_revision=args.base_revision,
        include_base=not args.no_base,
    )
    if args.output:
        target = Path(args.output)
    elif report.adapter is not None and Path(report.adapter).is_dir():
        target = Path(report.adapter) / EVAL_REPORT_FILE
    else:
        target = Path(EVAL_REPORT_FILE)
    path = report.write(target)
    print(report.markdown_table())
    print(f"\nreport: {path}")
    return 0
