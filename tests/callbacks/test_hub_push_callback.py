"""``HubPushCallback`` in a user's own trainer, after the other callbacks: each checkpoint reaches its branch whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from phi3_lora_hub import CheckpointFilesCallback, HubPushCallback, ModelCardCallback, SampleGenerationsCallback
from tests.publish.helpers import FAST_RETRY


@pytest.mark.parametrize("run", ["sft_run", "trainer_run"])
def test_each_checkpoint_reaches_its_branch_with_what_the_other_callbacks_wrote(
    run, request, hub, hub_repo_id, tmp_path
):
    from huggingface_hub import HfApi, hf_hub_download

    train = request.getfixturevalue(run)
    push = HubPushCallback(hub_repo_id, retry=FAST_RETRY)
    samples = SampleGenerationsCallback([[{"role": "user", "content": "Where is Peru?"}]])
    train(tmp_path, [samples, CheckpointFilesCallback(), ModelCardCallback(hub_repo_id), push])
    assert push.report.ok, push.report.summary()
    api = HfApi()
    assert {ref.name for ref in api.list_repo_refs(hub_repo_id).branches} == {"main", "step-2", "step-4"}
    files = set(api.list_repo_files(hub_repo_id, revision="step-2"))
    expected = {"README.md", "adapter_model.safetensors", "generation_config.json", "sample_generations.json"}
    assert expected <= files
    card = Path(hf_hub_download(hub_repo_id, "README.md", revision="step-2", cache_dir=tmp_path / "cache")).read_text()
    assert "The checkpoint saved at step 2" in card and "**Prompt 1:** Where is Peru?" in card
