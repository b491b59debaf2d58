"""Publisher behaviour around the pushes: the last checkpoint going with the final adapter, the main process only,
offline mode, and flushing when the recipe's trainer is driven directly."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi

from phi3_lora_hub.hub.errors import HubError
from phi3_lora_hub.hub.marker import CompletionMarker
from phi3_lora_hub.hub.publisher import HubPublisher
from phi3_lora_hub.hub.settings import HubPushSettings
from phi3_lora_hub.training.recipe_hub import publishing
from tests.publish.helpers import FAST_RETRY, assert_hub_holds, commit_titles, push_threads


def test_the_final_adapter_takes_the_waiting_last_checkpoint_along(hub, hub_repo_id, trained_run, tmp_path):
    hub.faults.delay("preupload", seconds=1.0, count=1)  # keeps the worker busy with step 4
    publisher = HubPublisher(HubPushSettings(hub_repo_id, push_resumable_state=True, retry=FAST_RETRY))
    publisher.start(tmp_path / "out")
    publisher.submit_checkpoint(trained_run / "checkpoint-4", 4)
    time.sleep(0.2)
    last = publisher.submit_checkpoint(trained_run / "checkpoint-6", 6)  # waits behind step 4
    final = publisher.submit_final(trained_run / "adapter", 6)
    report = publisher.finish(60)

    assert report.ok, report.summary()
    assert last.with_final and last.status == "pushed" and last.commit == final.commit and last.resumable
    api = HfApi()
    assert commit_titles(api, hub_repo_id) == ["Adapter after step 6", "Checkpoint step 4", "initial commit"]
    heads = {ref.name: ref.target_commit for ref in api.list_repo_refs(hub_repo_id).branches}
    assert heads["main"] == final.commit and set(heads) == {"main", "step-4", "step-6"}
    assert_hub_holds(api, hub_repo_id, "main", trained_run / "adapter", tmp_path / "dl")
    marker = api.hf_hub_download(hub_repo_id, "checkpoint/COMPLETE.json", revision="step-6", cache_dir=tmp_path)
    assert CompletionMarker.from_json(Path(marker).read_text()).problems(trained_run / "checkpoint-6") == []
    assert (
        "step 6: pushed to main + step-6 (commit" in report.summary() and "with the final adapter" in report.summary()
    )


def test_processes_other_than_the_main_one_never_push(hub, push_callback, trained_run, tmp_path, monkeypatch):
    callback = push_callback()
    args = SimpleNamespace(output_dir=str(trained_run), save_only_model=False, hub_token=None, push_to_hub=False)
    state = SimpleNamespace(is_world_process_zero=False, global_step=2)
    hub.clear_requests()
    callback.on_init_end(args, state, None)
    callback.on_train_begin(args, state, None)
    callback.on_save(args, state, None)
    callback.on_train_end(args, state, None)
    assert hub.requests == [] and not push_threads() and callback.report.pushes == []
    assert not (trained_run / "_hubstage").exists()

    monkeypatch.setenv("RANK", "1")  # what torchrun/accelerate set on the other processes
    with publishing(callback) as publishing_state:
        publishing_state.push_final(trained_run / "adapter", 6)
    assert publishing_state.report is None and hub.requests == []


def test_offline_mode_with_a_hub_repository_fails_fast(hub, push_callback, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set"):
        push_callback().prepare()


def test_driving_the_recipes_trainer_directly_still_flushes_at_the_end(hub, make_recipe, push_callback):
    callback = push_callback()
    recipe = make_recipe(callback)
    recipe.build_trainer().train()  # not recipe.train(): the callback finishes by itself at on_train_end
    assert callback.report.ok and [p.label for p in callback.report.pushed] == ["step 2", "step 4", "step 6"]
    assert not push_threads()
