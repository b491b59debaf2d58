"""Fixtures and settings of the adversarial suite (issue 9). Each part keeps its own block, names prefixed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Data fuzzing (issue 9, item 1). Tests pick their own max_examples: settings(settings.get_profile("adv_data"), ...).
# The deadline is far above a normal example (a few ms) so a shared CPU does not make it flaky, but a hang fails.
settings.register_profile(
    "adv_data",
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- adv_crash: crash safety of training, Hub faults end to end (issue 9, items 2 and 3) -------------------------


@pytest.fixture(scope="session")
def adv_crash_base() -> Path:
    """A tiny untrained Phi-3 (hidden size 32), built once per session in about a second."""
    from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

    return tiny_phi3_cache_dir(TinyPhi3Config(hidden_size=32, intermediate_size=64, pretrain_steps=0))


@pytest.fixture(scope="session")
def adv_crash_data(tmp_path_factory) -> Path:
    """48 sample conversations (the child runs hold 8 of them out for evaluation)."""
    from phi3_lora_hub.data.sample import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("adv-crash-data") / "chats.jsonl", n=48)


@pytest.fixture(scope="session")
def adv_crash_env() -> dict[str, str]:
    """The environment of a child run: this session's isolation, this checkout, allowed to reach the local Hub."""
    from phi3_testing import subprocess_env

    return subprocess_env(HF_HUB_OFFLINE="0", OMP_NUM_THREADS="1")


@pytest.fixture(scope="session")
def adv_crash_reference(adv_crash_base, adv_crash_data, adv_crash_env, tmp_path_factory) -> Path:
    """The final adapter of the child's run, uninterrupted and without any Hub: what every killed run must end with."""
    from adv_crash_testing import start_child

    output = tmp_path_factory.mktemp("adv-crash-reference") / "run"
    run = start_child("reference", output, base=adv_crash_base, data=adv_crash_data, env=adv_crash_env)
    assert run.wait() == 0, run.explain()
    return output / "adapter"


# --- end of adv_crash ----------------------------------------------------------------------------------------------
