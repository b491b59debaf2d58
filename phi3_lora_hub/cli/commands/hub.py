"""``phi3-lora-hub hub serve``: run the local Hugging Face Hub server until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from phi3_lora_hub.errors import ConfigError


def _token_spec(value: str) -> tuple[str, str, str, tuple[str, ...]]:
    """Parse ``TOKEN:USER:ROLE[:ORG,ORG...]``."""
    parts = value.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]) or parts[2] not in ("read", "write"):
        raise argparse.ArgumentTypeError(
            f"expected TOKEN:USER:ROLE or TOKEN:USER:ROLE:ORG1,ORG2 with ROLE read or write, got {value!r}"
        )
    orgs = tuple(org for org in parts[3].split(",") if org) if len(parts) == 4 else ()
    return parts[0], parts[1], parts[2], orgs


def register(subparsers: Any) -> None:
    hub = subparsers.add_parser("hub", help="local Hugging Face Hub server (offline Hub for pushes and loads)")
    actions = hub.add_subparsers(dest="hub_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve a local Hub on 127.0.0.1",
        description=(
            "Serve a Hub-compatible API on 127.0.0.1 so huggingface_hub, transformers and peft push to and load "
            "from local storage. Point clients at it with the printed HF_ENDPOINT and HF_TOKEN."
        ),
    )
    serve.add_argument("--root", required=True, help="directory holding the hub's data (created if missing)")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    serve.add_argument(
        "--token",
        action="append",
        type=_token_spec,
        default=[],
        metavar="TOKEN:USER:ROLE",
        help="accept TOKEN for USER with ROLE read or write (repeatable; optional :ORG1,ORG2 suffix). "
        "Without --token the default write and read-only tokens of user 'tester' are accepted.",
    )
    serve.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="token for the /_local_hub/ control endpoints (faults, settings, request log); default: a fixed "
        "development token, printed at start",
    )
    serve.add_argument(
        "--lfs",
        action="store_true",
        help="answer LFS upload mode for large/binary files (clients then need HF_HUB_DISABLE_XET=1); "
        "default: every file is uploaded as a regular file, which works with the default Xet-enabled client",
    )
    serve.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from phi3_lora_hub.hub.server import (
        DEFAULT_ADMIN_TOKEN,
        DEFAULT_READ_TOKEN,
        DEFAULT_WRITE_TOKEN,
        HubSettings,
        LocalHub,
        User,
        default_tokens,
    )

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}.")
    tokens = {token: User(user, role, orgs) for token, user, role, orgs in args.token} or default_tokens()
    write_token = next((token for token, user in tokens.items() if user.role == "write"), None)
    admin_token = args.admin_token or DEFAULT_ADMIN_TOKEN
    hub = LocalHub(
        args.root,
        port=args.port,
        tokens=tokens,
        settings=HubSettings(regular_only=not args.lfs),
        admin_token=admin_token,
    )
    hub.start()
    # A plain `kill` should also stop the server cleanly (finish requests in progress, release the root).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        print(f"Local Hub serving {hub.root} at {hub.url}")
        print("Point clients at it (before they import huggingface_hub):")
        for name, value in hub.env(token=write_token).items():
            print(f"  export {name}={value}")
        if args.lfs:
            print("  export HF_HUB_DISABLE_XET=1")
        if not args.token:
            print(f"Tokens: {DEFAULT_WRITE_TOKEN} (tester, write), {DEFAULT_READ_TOKEN} (tester, read)")
        print(f"Control endpoints (/_local_hub/...) need: Authorization: Bearer {admin_token}")
        print("Press Ctrl+C to stop.", flush=True)
        threading.Event().wait()  # until KeyboardInterrupt
    finally:
        hub.stop()
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)
