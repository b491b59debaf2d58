"""transformers and peft load from the local hub exactly as from the real one."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def model_repo(hub_mode, api, hub_repo_id, untrained_tiny_phi3) -> str:
    api.create_repo(hub_repo_id)
    api.upload_folder(folder_path=untrained_tiny_phi3, repo_id=hub_repo_id, commit_message="tiny phi3")
    return hub_repo_id


def test_transformers_loads_a_sharded_model_and_its_tokenizer(hub, model_repo, untrained_tiny_phi3, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = AutoModelForCausalLM.from_pretrained(untrained_tiny_phi3)
    remote = AutoModelForCausalLM.from_pretrained(model_repo, revision="main", cache_dir=tmp_path)
    assert type(remote).__name__ == "Phi3ForCausalLM"
    for (name, expected), (_, actual) in zip(local.state_dict().items(), remote.state_dict().items(), strict=True):
        assert torch.equal(expected, actual), name
    tokenizer = AutoTokenizer.from_pretrained(model_repo, cache_dir=tmp_path)
    assert (
        tokenizer("Hello world").input_ids
        == AutoTokenizer.from_pretrained(untrained_tiny_phi3)("Hello world").input_ids
    )
    shards = [r.path for r in hub.requests if r.method == "GET" and "model-0000" in r.path and model_repo in r.path]
    assert len(shards) >= 2  # the model really came in shards through the index file


def test_peft_loads_an_adapter_from_a_branch(hub, hub_mode, api, hub_repo_id, untrained_tiny_phi3, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(untrained_tiny_phi3)
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["qkv_proj"], init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    lora.save_pretrained(adapter_dir)
    expected = {name: value.clone() for name, value in lora.state_dict().items() if "lora_" in name}

    api.create_repo(hub_repo_id)
    api.create_branch(hub_repo_id, branch="step-2")
    api.upload_folder(folder_path=adapter_dir, repo_id=hub_repo_id, revision="step-2")
    assert not api.file_exists(hub_repo_id, "adapter_config.json")  # only on the branch

    fresh = AutoModelForCausalLM.from_pretrained(untrained_tiny_phi3)
    loaded = PeftModel.from_pretrained(fresh, hub_repo_id, revision="step-2", cache_dir=tmp_path / "cache")
    actual = {name: value for name, value in loaded.state_dict().items() if "lora_" in name}
    assert expected.keys() == actual.keys() and len(expected) == 4  # A and B of 2 layers
    for name, value in expected.items():
        assert torch.equal(value, actual[name]), name
    fetched = [r.route.rsplit("/", 1)[-1] for r in hub.requests if r.method == "GET" and hub_repo_id in r.route]
    assert "adapter_model.safetensors" in fetched and "adapter_model.bin" not in fetched


def test_space_style_votes_dataset_with_commit_scheduler_and_datasets(hub, hub_mode, api, tmp_path):
    import datasets
    from huggingface_hub import CommitScheduler

    repo_id = hub.new_repo_id("votes")
    api.create_repo(repo_id, repo_type="dataset")
    votes = tmp_path / "votes"
    votes.mkdir()
    scheduler = CommitScheduler(repo_id=repo_id, repo_type="dataset", folder_path=votes, path_in_repo="data", every=60)
    try:
        for batch in (0, 1):
            with (votes / "votes.jsonl").open("a") as handle:
                handle.write(f'{{"adapter": "a{batch}", "score": {batch}}}\n')
            scheduler.trigger().result(timeout=30)
    finally:
        scheduler.stop()
    loaded = datasets.load_dataset(repo_id, split="train", cache_dir=str(tmp_path / "ds-cache"))
    assert loaded.to_list() == [{"adapter": "a0", "score": 0}, {"adapter": "a1", "score": 1}]
    assert [c.title for c in api.list_repo_commits(repo_id, repo_type="dataset")][:2] == ["Scheduled Commit"] * 2
    # Its BytesIO uploads would go through LFS only for files the server puts in LFS mode; text stays regular.
    assert not any("/_lfs/" in r.path or "lfs/objects/batch" in r.path for r in hub.requests)
