"""The ``phi3-lora-hub`` command line: one subcommand per module in ``phi3_lora_hub.cli.commands``.

Errors are printed as one readable message (no traceback) unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

from phi3_lora_hub.errors import Phi3LoraHubError

# Each module defines `register(subparsers)`, which adds its subcommand and sets `func(args) -> int`.
COMMAND_MODULES: tuple[str, ...] = (
    "quickstart",
    "train",
    "chat",
    "merge",
    "push",
    "hub",
    "eval",
    "compare",
    "space",
    "tiny",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phi3-lora-hub",
        description="Fine-tune Phi-3 with LoRA on chat data, push checkpoints to the Hub, compare adapters.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"phi3_lora_hub.cli.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.debug else "%(message)s",
    )
    logging.getLogger("phi3_lora_hub").setLevel(logging.DEBUG if args.debug else logging.INFO)
    if not args.debug:
        # Library chatter (deprecation notices, HTTP request logs) is noise at the command line.
        for noisy in ("httpx", "httpx2", "urllib3", "datasets", "filelock"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\.")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _report("\ninterrupted")  # on a line of its own, not glued to a progress bar
        return 130
    except Exception as error:
        if args.debug:
            raise

        if isinstance(error, Phi3LoraHubError):
            _report(f"error: {error}")
            return 2
        _report(f"error: {type(error).__name__}: {error}\n(run with --debug for the traceback)")
        return 1


def _report(message: str) -> None:
    """Write ``message`` and its newline to stderr in one call.

    ``print`` writes the newline separately; under a launcher, where every process fails alike on a shared and
    unbuffered stderr, two processes' messages then run together on one line.
    """
    sys.stderr.write(f"{message}\n")


if __name__ == "__main__":
    sys.exit(main())
