"""Branch names for checkpoints: ``step-500`` by default, or a user template such as ``ckpt-{step}``.

Names are restricted to letters, digits, ``.``, ``_`` and ``-``. In particular ``/`` is refused: clients send it
percent-encoded (``ckpt%2Fstep-10``) and servers that decode paths before routing mis-route such revisions, so
a checkpoint pushed under such a name may not load back.
"""

from __future__ import annotations

import re

from phi3_lora_hub.errors import ConfigError

DEFAULT_BRANCH_TEMPLATE = "step-{step}"
STEP_FIELD = "{step}"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_RESERVED = frozenset({"main", "HEAD"})


def validate_branch_name(name: str) -> str:
    """``name`` if it is a usable branch name, else a ``ConfigError`` saying what is wrong."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"Branch name {name!r} is not allowed: use letters, digits, '.', '_' and '-' (starting with a letter or "
            "digit, at most 200 characters). '/' is refused because Hub clients and servers do not agree on how "
            "to route revisions that contain it."
        )
    if ".." in name or name.endswith((".", ".lock")):
        raise ConfigError(f"Branch name {name!r} is not allowed by git ('..', or a trailing '.' or '.lock').")
    if re.fullmatch(r"[0-9a-f]{40}", name):
        raise ConfigError(f"Branch name {name!r} looks like a commit id; clients would treat it as one.")
    return name


def validate_branch_template(template: str) -> str:
    """``template`` if it holds ``{step}`` once and renders valid, distinct names; else a ``ConfigError``."""
    if not isinstance(template, str) or template.count(STEP_FIELD) != 1:
        raise ConfigError(
            f"Branch template {template!r} must contain '{STEP_FIELD}' exactly once, e.g. 'step-{{step}}'."
        )
    if "{" in template.replace(STEP_FIELD, "") or "}" in template.replace(STEP_FIELD, ""):
        raise ConfigError(f"Branch template {template!r} may only use the '{STEP_FIELD}' field.")
    for sample in (0, 500, 123456789):
        name = validate_branch_name(branch_name(template, sample))
        if name in _RESERVED:
            raise ConfigError(f"Branch template {template!r} renders the reserved name {name!r}.")
    return template


def branch_name(template: str, step: int) -> str:
    """The branch of the checkpoint at ``step``."""
    return template.replace(STEP_FIELD, str(int(step)))


def step_of_branch(template: str, name: str) -> int | None:
    """The step a branch name was made for with ``template``, or ``None`` when it was not made from it."""
    prefix, suffix = template.split(STEP_FIELD)
    match = re.fullmatch(re.escape(prefix) + r"(0|[1-9][0-9]*)" + re.escape(suffix), name)
    return int(match.group(1)) if match else None
