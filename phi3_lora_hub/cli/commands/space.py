"""``phi3-lora-hub space run|deploy``: the side-by-side Space, locally or on the Hub."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

_RUN_OPTIONS = {  # option dest -> environment variable read by the app
    "base_model": "PHI3_SPACE_BASE_MODEL",
    "base_revision": "PHI3_SPACE_BASE_REVISION",
    "adapters": "PHI3_SPACE_ADAPTERS",
    "allow": "PHI3_SPACE_ALLOWLIST",
    "votes_repo": "PHI3_SPACE_VOTES_REPO",
    "data_dir": "PHI3_SPACE_DATA_DIR",
    "max_loaded": "PHI3_SPACE_MAX_LOADED",
    "dtype": "PHI3_SPACE_DTYPE",
    "host": "GRADIO_SERVER_NAME",
    "port": "GRADIO_SERVER_PORT",
}


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "space",
        help="run the side-by-side comparison Space locally, or deploy it to the Hub",
        description="The Gradio Space that chats with two Phi-3 adapters (or the base) side by side, with votes.",
    )
    actions = parser.add_subparsers(dest="space_command", metavar="ACTION", required=True)

    run = actions.add_parser(
        "run",
        help="serve the Space on this machine",
        description=(
            "Serve space_app/app.py locally. Options set the PHI3_SPACE_* variables the app reads (unset ones keep "
            "their environment value or default); HF_TOKEN from the environment reads private adapters."
        ),
    )
    run.add_argument("--base-model", help="Phi-3 base model: Hub id or local directory")
    run.add_argument("--base-revision", help="branch, tag or commit of the base model")
    run.add_argument("--adapters", help="adapter repos offered in the pickers, comma-separated (namespace/name)")
    run.add_argument("--allow", help="more repos visitors may type, comma-separated: namespace/name or namespace/*")
    run.add_argument("--votes-repo", help="Hub dataset repo the votes are appended to")
    run.add_argument("--data-dir", help="where votes are kept locally")
    run.add_argument("--max-loaded", type=int, help="adapters kept in memory at once (default 4)")
    run.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), help="serving precision")
    run.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="port (default 7860, or the next free one)")
    run.add_argument("--app-dir", type=Path, help="folder holding app.py (default: the checkout's space_app/)")
    run.set_defaults(func=run_space)

    deploy = actions.add_parser(
        "deploy",
        help="create or update a Hugging Face Space running the app",
        description=(
            "Create the Space (sdk gradio) if needed and upload app.py, requirements.txt, a README rendered from "
            "model_card_templates/space_readme.md.j2, space_config.json and the phi3_lora_hub package; then add "
            "a link to the Space to each adapter's model card. Uses HF_TOKEN or your `hf auth login` token."
        ),
    )
    deploy.add_argument("--space-id", required=True, help="the Space repo, namespace/name")
    deploy.add_argument("--adapters", required=True, help="adapter repos to offer, comma-separated (namespace/name)")
    deploy.add_argument("--base-model", default="microsoft/Phi-3-mini-4k-instruct", help="Hub id of the base model")
    deploy.add_argument("--allow", default="", help="more repos visitors may type: namespace/name or namespace/*")
    deploy.add_argument("--votes-repo", help="dataset repo for the votes (set HF_TOKEN as a Space secret)")
    deploy.add_argument("--title", default=None, help="the Space's title")
    deploy.add_argument("--hardware", default=None, help="suggested_hardware in the README (default t4-small)")
    deploy.add_argument("--private", action="store_true", help="create the Space private")
    deploy.add_argument("--no-link-cards", action="store_true", help="leave the adapters' model cards alone")
    deploy.add_argument("--output-dir", type=Path, help="only write the Space's files to this folder; upload nothing")
    deploy.add_argument("--app-dir", type=Path, help="folder holding app.py (default: the checkout's space_app/)")
    deploy.set_defaults(func=deploy_space)


def run_space(args: argparse.Namespace) -> int:
    """Serve the app in this process, with the options set as ``PHI3_SPACE_*`` variables."""
    import importlib.util
    import runpy

    from phi3_lora_hub.errors import ConfigError
    from phi3_lora_hub.space.deploy import default_app_dir
    from phi3_lora_hub.space.settings import SpaceSettings

    app = (args.app_dir or default_app_dir()) / "app.py"
    if not app.is_file():
        raise ConfigError(f"{app} is missing: pass --app-dir with a folder holding app.py, or reinstall phi3-lora-hub.")
    if importlib.util.find_spec("gradio") is None:
        raise ConfigError("`space run` needs Gradio, which is not installed: pip install 'phi3-lora-hub[space]'")
    for dest, variable in _RUN_OPTIONS.items():
        value = getattr(args, dest)
        if value is not None:
            os.environ[variable] = str(value)
    SpaceSettings.from_env()  # a bad value fails here, before the model loads
    runpy.run_path(str(app), run_name="__main__")
    return 0


def deploy_space(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from phi3_lora_hub.errors import ConfigError
    from phi3_lora_hub.space.deploy import SpaceLook, build_space, bundle_bytes, deploy, settings_for_deploy
    from phi3_lora_hub.space.repo_policy import repo_id_problem

    problem = repo_id_problem(args.space_id)
    if problem:
        raise ConfigError(f"--space-id {args.space_id!r} is not a repo id ({problem}): write namespace/name.")
    settings = settings_for_deploy(
        args.base_model, _list(args.adapters), allowlist=_list(args.allow), votes_repo=args.votes_repo
    )
    look = SpaceLook()
    if args.title:
        look = replace(look, title=args.title)
    if args.hardware:
        look = replace(look, suggested_hardware=args.hardware)
    if args.output_dir:
        files = build_space(args.output_dir, settings, look, app_dir=args.app_dir)
        size = bundle_bytes(args.output_dir, files)
        print(f"Space files written to {args.output_dir} ({len(files)} files, {size / 1000:.1f} kB); nothing uploaded.")
        return 0
    result = deploy(
        args.space_id, settings, look, private=args.private, link_cards=not args.no_link_cards, app_dir=args.app_dir
    )
    print(
        f"Space {result.space_id} deployed: {result.url} ({len(result.files)} files, "
        f"{result.bundle_bytes / 1000:.1f} kB, commit {result.commit})"
    )
    for repo in result.linked_cards:
        print(f"  model card of {repo} links to the Space")
    for repo, reason in result.unlinked_cards.items():
        print(f"  model card of {repo} not updated: {reason}")
    print(
        "If an adapter is private or votes go to a dataset, add HF_TOKEN as a secret in the Space's settings "
        "(Settings -> Variables and secrets)."
    )
    return 0
