"""``phi3-lora-hub train CONFIG.yaml [--set key=value ...]``: run a recipe described in YAML."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phi3_lora_hub.training.interrupt import InterruptedRun


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train from a YAML config",
        description="Train a LoRA adapter from a recipe YAML file (the format Phi3LoraRecipe.to_yaml writes).",
    )
    parser.add_argument("config", help="path to the recipe YAML")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set training.max_steps=100 --set lora.r=8 (repeatable)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="resume from the newest complete checkpoint in output_dir, or from CHECKPOINT",
    )
    parser.add_argument(
        "--resume-from-hub",
        action="store_true",
        help="continue a killed run from the newest complete checkpoint it pushed to hub_model_id "
        "(needs hub_push_resumable_state: true); starts at step 0 when the Hub holds none",
    )
    parser.add_argument("--dry-run", action="store_true", help="resolve and print the config, check the data, stop")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.distributed.processes import is_main_process
    from phi3_lora_hub.recipe import Phi3LoraRecipe
    from phi3_lora_hub.training.interrupt import TrainingInterrupted

    recipe = Phi3LoraRecipe.from_yaml(args.config, args.overrides)
    if args.dry_run:
        launch = recipe.check_launch()  # under a launcher: fails now on settings that would break the run
        data = recipe.prepare_data()
        if is_main_process():  # one report, not one per process
            print(recipe.to_yaml(), end="")
            print(f"# {launch.describe()}")
            print(f"# train data: {data.train_report.summary()}")
            if data.eval_report is not None:
                print(f"# eval data: {data.eval_report.summary()}")
        return 0
    try:
        result = recipe.train(resume_from_checkpoint=args.resume, resume_from_hub=args.resume_from_hub)
    except TrainingInterrupted as interrupted:
        if is_main_process():  # on a line of its own, after whatever the progress bar left on the current one
            sys.stderr.write(f"\n{interrupted.run.describe()}\n{resume_advice(args, interrupted.run)}\n")
        return 130
    if is_main_process():
        print(result)
    return 0


def resume_advice(args: argparse.Namespace, run: InterruptedRun) -> str:
    """The command that continues ``run`` (``--resume`` picks its newest complete checkpoint), or starts it over."""
    command = ["phi3-lora-hub", "train", args.config]
    for assignment in args.overrides:
        command += ["--set", assignment]
    if run.checkpoint is None:
        return f"Start it again with: {shlex.join(command)}"
    return f"Resume from {run.checkpoint.name} with: {shlex.join([*command, '--resume'])}"
