"""Fixtures of the publishing tests: a tiny untrained Phi-3, a chat file, recipes that push to the local Hub.

An untrained tiny Phi-3 is enough for push mechanics (a step takes a fraction of a second); training quality is
not the point here. Retries are made fast (``helpers.FAST_RETRY``) so fault cases finish in seconds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.publish.helpers import FAST_RETRY, TRAINING


@pytest.fixture(scope="session")
def chat_file(tmp_path_factory) -> Path:
    from phi3_lora_hub.data.sample import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("data") / "chats.jsonl", n=48)


@pytest.fixture(scope="session")
def trained_run(small_base, chat_file, tmp_path_factory) -> Path:
    """A finished 6-step run (checkpoints 2, 4, 6 and ``adapter/``) with held-out evaluation; no Hub involved.

    Tests that need realistic checkpoint folders without training again use (copies of) its folders.
    """
    from phi3_lora_hub import Phi3LoraRecipe

    output = tmp_path_factory.mktemp("trained-run")
    Phi3LoraRecipe(str(small_base), str(chat_file), output_dir=str(output), eval_size=8, training=TRAINING).train()
    return output


@pytest.fixture
def make_recipe(small_base, chat_file, tmp_path):
    """``make_recipe(callback=None, training=None, **settings)``: a recipe on the tiny model writing to tmp_path/run.

    ``callback`` (a ``HubPushCallback``) is passed in ``callbacks``; otherwise ``hub_model_id`` and the other
    ``hub_*`` settings in ``settings`` make the recipe build its own.
    """
    from phi3_lora_hub import Phi3LoraRecipe

    def make(callback=None, training: dict[str, Any] | None = None, extra_callbacks=(), **settings: Any):
        callbacks = [*extra_callbacks, *([callback] if callback is not None else [])]
        settings.setdefault("output_dir", str(tmp_path / "run"))
        return Phi3LoraRecipe(
            str(small_base),
            str(chat_file),
            training={**TRAINING, **(training or {})},
            callbacks=callbacks,
            **settings,
        )

    return make


@pytest.fixture
def push_callback(hub_repo_id):
    """``push_callback(**kwargs)``: a ``HubPushCallback`` to ``hub_repo_id`` with fast retries."""
    from phi3_lora_hub.callbacks.hub_push import HubPushCallback

    def make(**kwargs: Any):
        kwargs.setdefault("retry", FAST_RETRY)
        return HubPushCallback(kwargs.pop("repo_id", hub_repo_id), **kwargs)

    return make


@pytest.fixture
def hub_logs(caplog):
    """Captures the publisher's log records (and everyone else's, at DEBUG)."""
    caplog.set_level(logging.DEBUG)
    return caplog
