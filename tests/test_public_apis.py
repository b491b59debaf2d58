"""The package reaches its dependencies (accelerate, datasets, huggingface_hub, TRL) through their public APIs only:
a private attribute of a dependency changes without notice on its next release."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "phi3_lora_hub"
PRIVATE_STATE = re.compile(
    r"\._shared_state\b|\._fingerprint\b"  # accelerate, datasets
    r"|\b_GLOBAL_CLIENT_FACTORY\b|\butils\._http\b"  # huggingface_hub
    r"|\._metrics\b|\._total_train_tokens\b|\._tp_size\b|\b_set_signature_columns_if_needed\b"  # TRL
)


def test_no_module_reads_the_private_state_of_a_dependency():
    hits = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE_STATE.search(line)
    ]
    assert hits == []
