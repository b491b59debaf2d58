"""A loralib run is published like any PEFT run and answers in the Space (issue 8, item 4).

One q/v-only loralib run of the recipe on the tiny Phi-3 pushes its checkpoints and final adapter to the local Hub
through the recipe's Hub callbacks; the Hub holds a standard PEFT adapter with a card saying how it was trained, and
the Space app, asked for that repository, answers exactly as the converted adapter does when loaded alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("loralib")

from gradio_client import Client
from huggingface_hub import HfApi
from space_testing import QUESTION, alone_answers, answers, hub_reachable, make_settings, running_space

pytestmark = pytest.mark.slow

REPO = "tester/space-loralib"
MAX_NEW = 24


@pytest.fixture(scope="module")
def loralib_run(tiny_model_dir, local_hub, tmp_path_factory):
    """20 loralib steps (q and v slices of qkv_proj only), a checkpoint every 10, pushed to ``REPO``."""
    from phi3_lora_hub import Phi3LoraRecipe
    from phi3_lora_hub.data.sample import sample_conversations

    recipe = Phi3LoraRecipe(
        str(tiny_model_dir),
        sample_conversations(96),
        output_dir=str(tmp_path_factory.mktemp("space-loralib")),
        hub_model_id=REPO,
        training={
            "max_steps": 20,
            "save_steps": 10,
            "per_device_train_batch_size": 8,
            "learning_rate": 3e-3,
            "disable_tqdm": True,
        },
        lora={"backend": "loralib", "target_modules": ["qkv_proj"], "qkv_slices": ["q", "v"], "r": 8},
        evaluation={"num_samples": 0},
    )
    with hub_reachable():
        return recipe.train()


def test_the_hub_holds_a_peft_adapter_with_a_loralib_card(loralib_run, tmp_path):
    assert loralib_run.hub.ok, loralib_run.hub.summary()
    api = HfApi()
    with hub_reachable():
        branches = sorted(ref.name for ref in api.list_repo_refs(REPO).branches)
        files = set(api.list_repo_files(REPO))
        card = api.hf_hub_download(REPO, "README.md", local_dir=tmp_path)
    assert branches == ["main", "step-10", "step-20"]
    assert {"adapter_model.safetensors", "adapter_config.json"} <= files
    text = Path(card).read_text(encoding="utf-8")
    assert "trained with loralib" in text and "MergedLinear on qkv_proj (q, v)" in text
    assert "library_name: peft" in text and "- loralib" in text


def test_the_space_answers_with_the_loralib_adapter(loralib_run, tiny_model_dir, tmp_path):
    expected = alone_answers(tiny_model_dir, loralib_run.adapter_dir, [QUESTION], MAX_NEW)[0]
    base = alone_answers(tiny_model_dir, None, [QUESTION], MAX_NEW)[0]
    settings = make_settings(tiny_model_dir, tmp_path / "space-data", PHI3_SPACE_ADAPTERS=REPO)
    values = {"system": "", "temperature": 0, "top_p": 1, "max_new_tokens": MAX_NEW, "seed": 0, "blind": False}
    with hub_reachable(), running_space(settings) as space:
        client = Client(space.url, verbose=False)
        try:
            chat_a, chat_b, *_ = client.predict(
                QUESTION, "base", None, REPO, "main", *values.values(), api_name="/send"
            )
        finally:
            client.close()
    assert answers(chat_a) == [base]
    assert answers(chat_b) == [expected] and expected != base
