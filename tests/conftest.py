"""Test isolation: no network, no real token, no user cache. Runs before anything imports huggingface_hub.

``huggingface_hub`` reads its environment when it is imported, so the variables are set at the top of this
module. ``HF_ENDPOINT`` points at a loopback port reserved for the local Hub server: a stray Hub call can only
ever reach 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
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
