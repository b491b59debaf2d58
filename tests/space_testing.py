"""Helpers for the Space tests: reaching the local Hub, adapter repos with checkpoint branches, the app on loopback.

Imported by the Space tests (``tests/space``, ``tests/adversarial``) as ``from space_testing import ...``; the
fixtures of tests/space are in its ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from phi3_testing import ROOT

APP_FILE = ROOT / "space_app" / "app.py"
ADAPTER_PATTERNS = ["adapter_config.json", "adapter_model.safetensors"]
QUESTION = "What currency is used in Peru?"


@contextlib.contextmanager
def hub_reachable() -> Iterator[None]:
    """Lift the session's offline mode inside the block (as the ``hub_online`` fixture does for one test)."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        patch.setenv("HF_HUB_OFFLINE", "0")
        patch.setenv("HF_DATASETS_OFFLINE", "0")
        if "datasets.config" in sys.modules:
            patch.setattr(sys.modules["datasets.config"], "HF_HUB_OFFLINE", False)
        yield


@dataclass
class AdapterRepo:
    """An adapter repo on the local Hub: ``main`` plus checkpoint branches, with the commit of each."""

    repo_id: str
    commits: dict[str, str] = field(default_factory=dict)
    """revision -> commit id."""


def push_adapter(repo_id: str, revisions: dict[str, Path]) -> AdapterRepo:
    """Create ``repo_id`` and push each adapter folder to its revision (``main`` first, branches from it)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    repo = AdapterRepo(repo_id)
    for revision, folder in sorted(revisions.items(), key=lambda item: item[0] != "main"):
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision, allow_patterns=ADAPTER_PATTERNS)
        repo.commits[revision] = api.model_info(repo_id, revision=revision).sha
    return repo


def write_adapter_files(folder: Path, config: dict[str, Any], tensors: dict[str, Any] | None) -> Path:
    """An adapter folder with ``config`` and (when given) ``tensors`` saved as adapter_model.safetensors."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    if tensors is not None:
        save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def for_base(adapter_dir: Path, base_model: str, target: Path) -> Path:
    """A copy of ``adapter_dir``'s two files in ``target`` whose config names ``base_model`` as its base (the tiny
    test adapters name a local folder; a deployed Space runs a Hub base)."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    (target / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base_model}))
    shutil.copyfile(adapter_dir / "adapter_model.safetensors", target / "adapter_model.safetensors")
    return target


def make_settings(base_dir: Path, data_dir: Path, **overrides: str):
    """Settings for a Space on ``base_dir`` offering both test adapters and anything of user ``tester``."""
    from phi3_lora_hub.space.settings import SpaceSettings

    environ = {
        "PHI3_SPACE_BASE_MODEL": str(base_dir),
        "PHI3_SPACE_ADAPTERS": "tester/space-compass,tester/space-terse",
        "PHI3_SPACE_ALLOWLIST": "tester/*",
        "PHI3_SPACE_DTYPE": "float32",
        "PHI3_SPACE_DATA_DIR": str(data_dir),
        "PHI3_SPACE_MAX_NEW_TOKENS": "64",
        "PHI3_SPACE_MAX_PROMPT_CHARS": "300",
        **overrides,
    }
    return SpaceSettings.from_env(environ)


def load_app_module():
    """``space_app/app.py`` as a module (imported once per process)."""
    name = "phi3_space_app_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class RunningSpace:
    runtime: Any
    demo: Any
    url: str


@contextlib.contextmanager
def running_space(settings) -> Iterator[RunningSpace]:
    """The app for ``settings``, served on 127.0.0.1 as the Space serves it (``app.serve``: its queue, launch
    settings and CSS)."""
    from phi3_lora_hub.space.runtime import SpaceRuntime

    runtime = SpaceRuntime.start(settings)
    app = load_app_module()
    demo = app.build_demo(runtime)
    app.serve(demo, settings, prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        yield RunningSpace(runtime, demo, demo.local_url)
    finally:
        demo.close()
        runtime.close()


def alone_answers(base_dir: Path, adapter_dir: Path | None, questions: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of the base with ``adapter_dir`` loaded alone, by the evaluation code (not the Space's)."""
    from phi3_lora_hub.decoding import chat_generation_config
    from phi3_lora_hub.generation import generate_replies
    from phi3_lora_hub.model.loading import load_for_inference

    model, tokenizer = load_for_inference(str(base_dir), adapter_dir)
    prompts = [[{"role": "user", "content": question}] for question in questions]
    return [
        g.text
        for g in generate_replies(model, tokenizer, prompts, chat_generation_config(max_new_tokens=max_new_tokens))
    ]


def text_of(message: dict) -> str:
    """A chat message's text: Gradio 6 sends ``content`` as a list of blocks."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def answers(chatbot_value: Any) -> list[str]:
    """The assistant texts of a Chatbot output (an update dict or a plain message list)."""
    messages = chatbot_value["value"] if isinstance(chatbot_value, dict) else chatbot_value
    return [text_of(message) for message in messages if message["role"] == "assistant"]


def wait_for_app(url: str, process: subprocess.Popen, timeout: float = 120) -> httpx.Response:
    """Wait until the app started as ``process`` answers ``url`` with 200, and return that answer; fail with the
    app's output if it exits first, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")
