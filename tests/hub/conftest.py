"""Helpers for the local Hub server's own tests (the shared fixtures live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def api(hub):
    """An ``HfApi`` on the session hub, authenticated by ``HF_TOKEN`` (user ``tester``, write)."""
    from huggingface_hub import HfApi

    return HfApi()


@pytest.fixture
def raw(hub):
    """A bare HTTP client on the hub (no huggingface_hub hooks, no proxies), to check the wire protocol."""
    import httpx2

    with httpx2.Client(base_url=hub.url, trust_env=False, timeout=10) as client:
        yield client


@pytest.fixture
def repo(api, hub_repo_id) -> str:
    """A freshly created model repo of user ``tester``."""
    api.create_repo(hub_repo_id)
    return hub_repo_id


@pytest.fixture(scope="session")
def untrained_tiny_phi3(tmp_path_factory) -> Path:
    """A tiny Phi-3 (model, tokenizer) saved in 3 safetensors shards, built in well under a second.

    ``tiny_model_dir`` is pretrained for minutes on a small CPU; loading from the Hub only needs valid files.
    Sharding makes ``from_pretrained`` go through the index file and the tree listing.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

    built = tiny_phi3_cache_dir(TinyPhi3Config(hidden_size=32, intermediate_size=64, pretrain_steps=0))
    target = tmp_path_factory.mktemp("tiny-phi3-sharded")
    AutoModelForCausalLM.from_pretrained(built).save_pretrained(target, max_shard_size="60KB")
    AutoTokenizer.from_pretrained(built).save_pretrained(target)
    return target
