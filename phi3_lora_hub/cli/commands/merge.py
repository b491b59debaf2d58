"""``phi3-lora-hub merge --adapter DIR --output DIR``: fold an adapter into its base model."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge an adapter into its base model",
        description="Write a merged model that plain transformers loads (AutoModelForCausalLM.from_pretrained).",
    )
    parser.add_argument("--adapter", required=True, help="adapter directory")
    parser.add_argument("--output", required=True, help="where to write the merged model")
    parser.add_argument("--base-model", help="base model id or directory (default: from the adapter's config)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.cli.commands.chat import base_model_of
    from phi3_lora_hub.model.merging import merge_adapter

    output = merge_adapter(args.base_model or base_model_of(args.adapter), args.adapter, args.output)
    print(f"merged model written to {output}")
    return 0
