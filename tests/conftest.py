"""Fixtures shared by the whole suite. Isolation (environment, ports, paths) is set up in ``phi3_testing``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from phi3_testing import (  # sets the environment first
    FAKE_TOKEN,
    HUB_PORT,
    PHI3_TOKENIZER_DIR,
    SESSION_DIR,
    torch_threads,
)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The default offline tiny Phi-3 (built once per session, with one torch thread)."""
    from phi3_lora_hub.model.tiny import tiny_phi3_cache_dir

    with torch_threads(1):
        return tiny_phi3_cache_dir()


@pytest.fixture(scope="session")
def small_base() -> Path:
    """A tiny untrained Phi-3 (hidden size 32), built once per session in about a second."""
    from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

    return tiny_phi3_cache_dir(TinyPhi3Config(hidden_size=32, intermediate_size=64, pretrain_steps=0))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from phi3_lora_hub.model.loading import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="session")
def real_tokenizer():
    """The real Phi-3-mini tokenizer from ../shared/assets (tests using it are skipped when it is absent)."""
    if not PHI3_TOKENIZER_DIR.is_dir():
        pytest.skip("../shared/assets is not present")
    from phi3_lora_hub.model.loading import load_tokenizer

    return load_tokenizer(str(PHI3_TOKENIZER_DIR))


# --- local Hub -------------------------------------------------------------------------------------------------
# Tests that talk to a Hub use the session's local server on HUB_PORT (where HF_ENDPOINT points) through the
# `hub` fixture, which also lifts the offline mode for that one test. Typical use:
#
#     def test_push(hub, hub_repo_id):
#         HfApi().create_repo(hub_repo_id)              # HF_TOKEN (FAKE_TOKEN) is user "tester", write role
#         hub.faults.fail("commit", status=500)         # faults and switches are reset after each test
#
# Child processes: pass subprocess_env(HF_HUB_OFFLINE="0") so they may reach the server.


@pytest.fixture(scope="session")
def local_hub():
    """The session's local Hub server (``LocalHub``) on ``HUB_PORT``, storing into a temporary root.

    Tokens: ``FAKE_TOKEN`` (the ``HF_TOKEN`` of every test) and the root's random ``write_token`` are user
    ``tester`` with the write role, its ``read_token`` is ``tester`` read-only. Prefer the ``hub`` fixture.
    """
    from phi3_lora_hub.local_hub import LocalHub

    with LocalHub(SESSION_DIR / "local-hub", port=HUB_PORT) as server:
        server.add_token(FAKE_TOKEN, "tester")
        yield server


@pytest.fixture
def hub_online(monkeypatch):
    """Lift this session's offline mode for one test, for every library that checks it.

    huggingface_hub (and transformers, which asks it) reads ``constants.HF_HUB_OFFLINE`` at call time; peft
    reads the ``HF_HUB_OFFLINE`` environment variable at call time; datasets copies the flag into
    ``datasets.config`` when imported. All three are restored after the test.
    """
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    if "datasets.config" in sys.modules:
        monkeypatch.setattr(sys.modules["datasets.config"], "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(local_hub, hub_online):
    """The session's local Hub, reachable for this test; its request log starts empty, its faults and switches
    are reset afterwards."""
    from phi3_lora_hub.local_hub import HubSettings

    local_hub.clear_requests()
    yield local_hub
    local_hub.faults.clear()
    local_hub.settings.update(HubSettings().to_json())
    local_hub.start()  # a test may have stopped it (no-op when running)


@pytest.fixture
def hub_repo_id(local_hub) -> str:
    """A repo id of user ``tester`` that no other test uses (not created)."""
    return local_hub.new_repo_id("test")


@pytest.fixture(params=["xet", "lfs"])
def hub_mode(request, hub, monkeypatch) -> str:
    """Run a test in both client/server upload modes (push tests should, their retry behaviour differs).

    ``"xet"``: the client's default (hf_xet installed, Xet enabled) with the server answering "regular" for
    every file; ``upload_folder`` takes the pipelined path, which retries commits. ``"lfs"``: Xet disabled on
    the client and an LFS-capable server; large/binary files go through LFS batch + PUT + verify, and the
    commit is not retried.
    """
    import huggingface_hub.constants

    if request.param == "lfs":
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        hub.settings.regular_only = False
    else:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", False)
        hub.settings.regular_only = True
    return request.param
