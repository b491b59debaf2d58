"""Fixtures and settings of the adversarial suite (issue 9). Each part keeps its own block, with its prefix.

Hypothesis runs with fixed seeds (``derandomize``), no example database and deadlines.
"""

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

# --- adv_space_: the Space under load and abuse ----------------------------------------------------------------


@pytest.fixture(scope="session")
def adv_space_contenders(local_hub, tiny_model_dir, tmp_path_factory) -> dict:
    """The base and three adapters on the local Hub, each answering differently (random LoRA weights).

    ``alpha`` and ``alpha-step-2`` are two revisions of ``tester/adv-space-alpha`` (``main`` and branch
    ``step-2``); ``beta`` is ``tester/adv-space-beta``. Returns ``name -> Contender``.
    """
    from adv_space_testing import Contender, random_adapter
    from space_testing import hub_reachable, push_adapter

    folder = tmp_path_factory.mktemp("adv-space-adapters")
    made = {name: random_adapter(tiny_model_dir, folder / name, seed) for name, seed in ADV_SPACE_SEEDS.items()}
    with hub_reachable():
        alpha = push_adapter("tester/adv-space-alpha", {"main": made["alpha"], "step-2": made["alpha-step-2"]})
        beta = push_adapter("tester/adv-space-beta", {"main": made["beta"]})
    revisions = {"alpha": (alpha, "main"), "alpha-step-2": (alpha, "step-2"), "beta": (beta, "main")}
    adapters = {
        name: Contender(name, repo.repo_id, revision, repo.commits[revision], made[name])
        for name, (repo, revision) in revisions.items()
    }
    return {"base": Contender("base", "base", None, None, None), **adapters}


ADV_SPACE_SEEDS = {"alpha": 1, "alpha-step-2": 2, "beta": 5}


@pytest.fixture
def adv_space_settings(tiny_model_dir, tmp_path):
    """A factory of Space settings on the tiny base offering the adversarial adapters (see ``make_settings``)."""
    from space_testing import make_settings

    def make(data_dir: Path | None = None, **overrides: str):
        overrides.setdefault("PHI3_SPACE_ADAPTERS", "tester/adv-space-alpha,tester/adv-space-beta")
        return make_settings(tiny_model_dir, data_dir or tmp_path / "space-data", **overrides)

    return make


# --- end of adv_space_ -------------------------------------------------------------------------------------------


# --- adv_crash: crash safety of training, Hub faults end to end (issue 9, items 2 and 3) -------------------------


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
def adv_crash_reference(small_base, adv_crash_data, adv_crash_env, tmp_path_factory) -> Path:
    """The final adapter of the child's run, uninterrupted and without any Hub: what every killed run must end with."""
    from adv_crash_testing import start_child

    output = tmp_path_factory.mktemp("adv-crash-reference") / "run"
    run = start_child("reference", output, base=small_base, data=adv_crash_data, env=adv_crash_env)
    assert run.wait() == 0, run.explain()
    return output / "adapter"


# --- end of adv_crash ----------------------------------------------------------------------------------------------
