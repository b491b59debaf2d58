"""``phi3-lora-hub push ADAPTER_DIR --repo-id ID``: publish an existing adapter with a generated model card."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="publish an adapter directory to the Hub, with a generated model card",
        description=(
            "Push the adapter files of ADAPTER_DIR (safetensors weights, configs, tokenizer, reports; never pickles) "
            "to main of a Hub repository, with a freshly generated model card and loss curve. The token comes from "
            "HF_TOKEN or `hf auth login` (never from the command line, where it would land in the shell history)."
        ),
    )
    parser.add_argument(
        "adapter_dir", metavar="ADAPTER_DIR", help="an adapter directory, e.g. phi3-lora-output/adapter"
    )
    parser.add_argument("--repo-id", required=True, help="namespace/name of the model repository (created if missing)")
    parser.add_argument("--branch", default=None, help="also put the adapter on this branch (e.g. step-500)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--card-template", default=None, metavar="PATH", help="a Jinja model card template of yours")
    parser.add_argument("--license", default="mit", help="license id for the card metadata (default: mit)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3_lora_hub.hub.adapter_push import push_adapter

    pushed = push_adapter(
        args.adapter_dir,
        args.repo_id,
        branch=args.branch,
        private=args.private,
        card_template=args.card_template,
        card_license=args.license,
        timeout=args.timeout,
    )
    print(f"Pushed {args.adapter_dir} to {pushed.repo_url} (main, commit {pushed.commit})")
    if pushed.branch_url:
        print(f"  branch {pushed.branch}: {pushed.branch_url}")
    return 0
