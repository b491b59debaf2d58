"""The Hub token: where it comes from, checking it before training starts, and keeping it out of every message.

The token is resolved the way ``huggingface_hub`` does it (an explicit argument first, then ``HF_TOKEN``, then the
file written by ``hf auth login``) and lives only inside the plugin's own ``HfApi``. It is never put into the
training arguments: ``TrainingArguments.hub_token`` is pickled into ``training_args.bin``, which Trainer uploads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from phi3_lora_hub.hub.errors import HubAuthError
from phi3_lora_hub.hub.retry import failure_of

TOKEN_SETTINGS_URL = "https://huggingface.co/settings/tokens"
_REDACTED = "hf_***"
# Tokens as they appear in text: Hub user tokens (hf_...) and OAuth tokens (hf_oauth_...).
_TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9_]{8,}")


def resolve_token(explicit: str | None = None) -> str | None:
    """``explicit`` when given, else what ``huggingface_hub`` would use (``HF_TOKEN``, then the login file)."""
    if explicit:
        return explicit
    from huggingface_hub import get_token

    return get_token()


class Redactor:
    """Removes a secret (and anything shaped like a Hub token) from text before it is logged or raised."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret if secret and len(secret) >= 4 else None

    def __call__(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, _REDACTED)
        return _TOKEN_PATTERN.sub(_REDACTED, text)


@dataclass(frozen=True)
class TokenOwner:
    """Who a token belongs to, from ``whoami``."""

    name: str
    role: str | None
    """``write``, ``read``, ``fineGrained`` (permissions per repository), or ``None`` when the Hub does not say."""


def check_token(api: Any, token: str | None, redact: Redactor) -> TokenOwner:
    """Ask the Hub who ``token`` belongs to; raise :class:`HubAuthError` when it is missing, invalid or read-only.

    Transient errors (server down, 5xx, timeouts) are re-raised unchanged: the caller decides whether the pushes
    may start anyway and retry later.
    """
    if not token:
        raise HubAuthError(
            "No Hugging Face token found, so checkpoints cannot be pushed. Set HF_TOKEN, run `hf auth login`, "
            f"or pass token= to HubPushCallback (create a token with write access at {TOKEN_SETTINGS_URL})."
        )
    try:
        info = api.whoami(token=token)
    except Exception as error:
        failure = failure_of(error, redact)
        if failure.status == 401:
            raise HubAuthError(
                f"The Hub at {api.endpoint} rejected the token (401 Unauthorized): it is invalid, expired or revoked. "
                f"Create a token with write access at {TOKEN_SETTINGS_URL} and set HF_TOKEN."
            ) from None
        raise
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    owner = TokenOwner(name=str(info.get("name") or "?"), role=role)
    if role == "read":
        raise HubAuthError(
            f"The token of user {owner.name!r} is read-only, so checkpoints cannot be pushed. Use a token with write "
            f"access ({TOKEN_SETTINGS_URL}) in HF_TOKEN."
        )
    return owner


def raise_for_repo_access(error: BaseException, repo_id: str, owner: TokenOwner, redact: Redactor) -> None:
    """Turn a 401/403 from creating or writing ``repo_id`` into an actionable :class:`HubAuthError`."""
    failure = failure_of(error, redact)
    if failure.status in (401, 403):
        raise HubAuthError(
            f"User {owner.name!r} may not write to {repo_id!r} ({failure.status}): use a repository in your own "
            "namespace or an organization you can write to, or a token with write access to it "
            f"({TOKEN_SETTINGS_URL}). Hub said: {failure.cause}"
        ) from None
