"""Test isolation: no network, no real token, no user cache. Runs before anything imports huggingface_hub.

``huggingface_hub`` reads its environment when it is imported, so the variables are set at the top of this
module. ``HF_ENDPOINT`` points at a loopback port reserved for the local Hub server: a stray Hub call can only
ever reach 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="phi3-lora-hub-tests-"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HUB_PORT = _free_port()
FAKE_TOKEN = "hf_testtoken0000000000000000000000000"

os.environ.update(
    {
        "HF_ENDPOINT": f"http://127.0.0.1:{HUB_PORT}",
        "HF_HOME": str(_SESSION_DIR / "hf_home"),
        "HF_TOKEN": FAKE_TOKEN,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        "TOKENIZERS_PARALLELISM": "false",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(_SESSION_DIR / "gradio"),
        "PHI3_LORA_HUB_CACHE": str(_SESSION_DIR / "cache" / "prepared"),
        "WANDB_DISABLED": "true",
        "DO_NOT_TRACK": "1",
    }
)

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"
PHI3_TOKENIZER_DIR = ASSETS / "phi3-mini-4k-instruct"
DATA_DIR = ASSETS / "data"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this session's isolation plus the repository on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


requires_assets = pytest.mark.skipif(
    not PHI3_TOKENIZER_DIR.is_dir(), reason="../shared/assets (real Phi-3 tokenizer and datasets) is not present"
)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The default offline tiny Phi-3 (built once per session)."""
    from phi3_lora_hub.model.tiny import tiny_phi3_cache_dir

    return tiny_phi3_cache_dir()


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

    Tokens: ``FAKE_TOKEN`` (the ``HF_TOKEN`` of every test) and ``DEFAULT_WRITE_TOKEN`` are user ``tester``
    with the write role, ``DEFAULT_READ_TOKEN`` is ``tester`` read-only. Prefer the ``hub`` fixture in tests.
    """
    from phi3_lora_hub.hub.server import LocalHub, User, default_tokens

    tokens = {**default_tokens(), FAKE_TOKEN: User("tester", "write")}
    with LocalHub(_SESSION_DIR / "local-hub", port=HUB_PORT, tokens=tokens) as server:
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
    from phi3_lora_hub.hub.server import HubSettings

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
