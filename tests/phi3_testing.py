"""Shared test settings: isolation from the network and the user's files, paths, and child-process helpers.

Imported by ``tests/conftest.py`` before anything imports ``huggingface_hub`` (which reads its environment at
import). ``HF_ENDPOINT`` points at a loopback port reserved for the local Hub server, so a stray Hub call can only
ever reach 127.0.0.1. Test modules import names from here (``from phi3_testing import ROOT``): a module name
that is unique in the tree, unlike ``conftest``, of which there are several.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SESSION_DIR = Path(tempfile.mkdtemp(prefix="phi3-lora-hub-tests-"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HUB_PORT = free_port()
FAKE_TOKEN = "hf_testtoken0000000000000000000000000"

os.environ.update(
    {
        "HF_ENDPOINT": f"http://127.0.0.1:{HUB_PORT}",
        "HF_HOME": str(SESSION_DIR / "hf_home"),
        "HF_TOKEN": FAKE_TOKEN,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        "TOKENIZERS_PARALLELISM": "false",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(SESSION_DIR / "gradio"),
        "PHI3_LORA_HUB_CACHE": str(SESSION_DIR / "cache" / "prepared"),
        "WANDB_DISABLED": "true",
        "DO_NOT_TRACK": "1",
    }
)
# The tiny models are faster on one thread (less synchronisation), and several test processes may share the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _keep_absl_off_captured_streams() -> None:
    """Point absl's log handler at the process's real stderr.

    absl (imported by rouge_score) binds its handler to whatever ``sys.stderr`` is when it is first imported, and
    closes that stream when logging is reconfigured unless it is the current or the original stderr. Gradio's launch
    reconfigures logging (uvicorn's ``dictConfig``), so a Space started in one test closed pytest's own capture
    stream when absl had been imported under capture in an earlier test, and the session died.
    """
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


_keep_absl_off_captured_streams()

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


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (tiny models are fastest on one, on a shared machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
