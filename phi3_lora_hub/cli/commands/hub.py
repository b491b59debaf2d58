"""``phi3-lora-hub hub serve``: run the local Hugging Face Hub server until interrupted."""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from pathlib import Path
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
        help="accept TOKEN for USER with ROLE read or write (repeatable; optional :ORG1,ORG2 suffix; never "
        "printed). Without --token the root's own random write and read-only tokens of user 'tester' are "
        "accepted (made on the first start, kept in ROOT/credentials.json; see 'hub token')",
    )
    serve.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="token for the /_local_hub/ control endpoints (faults, settings, request log); default: the root's "
        "random admin token",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host header is NAME (repeatable; e.g. a reverse proxy's name); "
        "127.0.0.1, localhost and [::1] are always answered, every other name gets 400",
    )
    serve.add_argument(
        "--lfs",
        action="store_true",
        help="answer LFS upload mode for large/binary files (clients then need HF_HUB_DISABLE_XET=1); "
        "default: every file is uploaded as a regular file, which works with the default Xet-enabled client",
    )
    serve.set_defaults(func=serve_command)
    token = actions.add_parser(
        "token",
        help="print a token of a local Hub root",
        description="Print one of the random tokens of a local Hub root (made if the root has none yet), "
        "e.g. export HF_TOKEN=$(phi3-lora-hub hub token --root hub-data).",
    )
    token.add_argument("--root", required=True, help="the hub's data directory (as given to 'hub serve')")
    token.add_argument(
        "--role", choices=("write", "read", "admin"), default="write", help="which token (default: write)"
    )
    token.set_defaults(func=token_command)


def serve_command(args: argparse.Namespace) -> int:
    from phi3_lora_hub.local_hub import HubSettings, LocalHub, User
    from phi3_lora_hub.local_hub.rootdir import CREDENTIALS_FILE

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}.")
    tokens = {token: User(user, role, orgs) for token, user, role, orgs in args.token} or None
    new_root = not (Path(args.root).expanduser() / CREDENTIALS_FILE).is_file()
    hub = LocalHub(
        args.root,
        port=args.port,
        tokens=tokens,
        settings=HubSettings(regular_only=not args.lfs),
        admin_token=args.admin_token,
        allowed_hosts=args.allowed_host,
    )
    hub.start()
    # A plain `kill` should also stop the server cleanly (finish requests in progress, release the root).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for line in _serve_banner(hub, args, new_root):
            print(line)
        print("Press Ctrl+C to stop.", flush=True)
        threading.Event().wait()  # until KeyboardInterrupt
    finally:
        hub.stop()
    return 0


def _serve_banner(hub: Any, args: argparse.Namespace, new_root: bool) -> list[str]:
    """What ``hub serve`` prints: the environment for clients, and the root's tokens only when just made.

    A token given on the command line is never echoed (it would land in terminal logs a second time).
    """
    from phi3_lora_hub.local_hub.rootdir import CREDENTIALS_FILE

    token_command = f"phi3-lora-hub hub token --root {shlex.quote(str(hub.root))}"
    show_tokens = new_root and not args.token
    if args.token:
        hf_token = "<a write token you gave with --token>"
    else:
        hf_token = hub.write_token if show_tokens else f"$({token_command})"
    lines = [
        f"Local Hub serving {hub.root} at {hub.url}",
        "Point clients at it (before they import huggingface_hub):",
        f"  export HF_ENDPOINT={hub.url}",
        "  export HF_HUB_OFFLINE=0",
        f"  export HF_TOKEN={hf_token}",
    ]
    if args.lfs:
        lines.append("  export HF_HUB_DISABLE_XET=1")
    if show_tokens:
        lines.append(f"New random tokens of user 'tester' (shown once): read-only {hub.read_token}")
    admin = hub.admin_token if new_root and not args.admin_token else "<admin token>"
    lines.append(f"Control endpoints (/_local_hub/...) need: Authorization: Bearer {admin}")
    lines.append(f"The root's tokens are kept in {hub.root / CREDENTIALS_FILE} (mode 0600); print one: {token_command}")
    return lines


def token_command(args: argparse.Namespace) -> int:
    from phi3_lora_hub.local_hub import root_credentials

    credentials = root_credentials(args.root)
    tokens = {"write": credentials.write_token, "read": credentials.read_token, "admin": credentials.admin_token}
    print(tokens[args.role])
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)
