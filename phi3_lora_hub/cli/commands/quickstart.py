"""``phi3-lora-hub quickstart``: the offline end-to-end run on the tiny Phi-3 and the bundled data."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="offline end-to-end run: tiny Phi-3, bundled data, train, evaluate, save, push, compare answers",
        description=(
            "Train a LoRA adapter on the offline tiny Phi-3 with the bundled sample data, in about a minute, pushing "
            "every checkpoint to a local Hub on 127.0.0.1 (stored in OUTPUT_DIR/hub)."
        ),
    )
    parser.add_argument("--output-dir", default="quickstart-output", help="where everything is written")
    parser.add_argument("--max-steps", type=int, default=None, help="training steps (default: 300)")
    parser.add_argument("--no-push", action="store_true", help="do not start the local Hub or push to it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.quickstart import run_quickstart

    report = run_quickstart(args.output_dir, max_steps=args.max_steps, push=not args.no_push)
    print(report.render())
    return 0
