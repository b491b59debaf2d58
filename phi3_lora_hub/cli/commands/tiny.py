"""``phi3-lora-hub tiny``: build (once) the offline tiny Phi-3 and print its directory."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tiny",
        help="build the offline tiny Phi-3 and print its directory",
        description="Build the offline tiny Phi-3 (the real architecture at toy sizes; about 30 s the first time, "
        "cached afterwards) and print its directory, for options that take a model directory (--base-model). "
        "In a recipe, model: tiny does the same.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.model.tiny import TINY_ALIAS, resolve_model_alias

    print(resolve_model_alias(TINY_ALIAS))
    return 0
