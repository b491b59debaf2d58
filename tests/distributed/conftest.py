"""Fixtures of the multi-process tests: an untrained tiny Phi-3 and a chat file, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def untrained_tiny_model() -> Path:
    """The tiny Phi-3 without its pretraining (built in seconds): enough to compare process layouts."""
    from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

    return tiny_phi3_cache_dir(TinyPhi3Config(pretrain_steps=0))


@pytest.fixture(scope="session")
def chat_jsonl(tmp_path_factory) -> Path:
    """200 sample conversations: 180 train, 20 held out (``eval_size: 20`` in the test recipes)."""
    from phi3_lora_hub.data.sample import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("chats") / "chats.jsonl", 200)
