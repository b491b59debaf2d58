"""Fetching adapters from the local Hub: revisions, commits, and every refusal before anything is loaded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from phi3_testing import FAKE_TOKEN
from space_testing import write_adapter_files

from phi3_lora_hub.space.compat import BaseSignature
from phi3_lora_hub.space.hub_adapters import AdapterSource
from phi3_lora_hub.space.refusal import Refusal
from phi3_lora_hub.space.repo_policy import AllowList


@pytest.fixture(scope="module")
def signature(tiny_model_dir) -> BaseSignature:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return BaseSignature.of(model, [str(tiny_model_dir)])


@pytest.fixture
def source(hub, signature, hub_adapters) -> AdapterSource:
    return AdapterSource(signature, AllowList.of(["tester/*", "alice/*"]))


def lora_tensors(signature: BaseSignature, rank: int = 2, *, in_features: int | None = None) -> dict:
    """LoRA matrices for layer 0's qkv_proj of the base (``in_features`` overrides the input size)."""
    import torch

    fan_in, fan_out = signature.linear["model.layers.0.self_attn.qkv_proj"]
    prefix = "base_model.model.model.layers.0.self_attn.qkv_proj"
    return {
        f"{prefix}.lora_A.weight": torch.randn(rank, in_features or fan_in),
        f"{prefix}.lora_B.weight": torch.randn(fan_out, rank),
    }


def lora_config(base: str, **changes) -> dict:
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "target_modules": ["qkv_proj"],
        "r": 2,
        "lora_alpha": 4,
        **changes,
    }


def push_folder(folder: Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id).oid


def downloads(hub, name: str) -> list:
    """Requests of the local hub that downloaded (or probed) file ``name``."""
    return [r for r in hub.requests if "/resolve/" in r.path and r.path.endswith("/" + name)]


def test_revisions_resolve_to_their_commits(source, hub_adapters):
    compass = hub_adapters.compass
    assert source.revisions(compass.repo_id) == ["main", "step-12", "step-4"]
    for revision in ("main", "step-4", "step-12"):
        adapter = source.fetch(compass.repo_id, revision)
        assert adapter.key.commit == compass.commits[revision]
        assert adapter.revision == revision
        assert adapter.label == f"{compass.repo_id} @ {revision} ({compass.commits[revision][:7]})"
        assert sorted(p.name for p in adapter.directory.iterdir()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
        ]
    assert compass.commits["step-4"] != compass.commits["main"]
    by_commit = source.fetch(compass.repo_id, compass.commits["step-4"])
    assert by_commit.key == source.fetch(compass.repo_id, "step-4").key
    assert by_commit.label == f"{compass.repo_id} @ {compass.commits['step-4'][:7]}"


def test_a_revision_that_does_not_exist(source, hub_adapters):
    with pytest.raises(Refusal, match="has no revision `step-999`: pick one from the list"):
        source.fetch(hub_adapters.compass.repo_id, "step-999")


def test_pickle_only_adapter_is_refused_before_anything_is_downloaded(hub, source, signature, tmp_path, monkeypatch):
    import torch

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load must never run on a visitor's adapter")

    monkeypatch.setattr(torch, "load", no_unpickling)
    folder = write_adapter_files(tmp_path / "bin", lora_config(str(signature.names[0])), tensors=None)
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    push_folder(folder, "tester/space-pickle-only")
    hub.clear_requests()
    with pytest.raises(Refusal, match=r"only as a pickle \(adapter_model.bin\).*adapter_model.safetensors only"):
        source.fetch("tester/space-pickle-only")
    assert downloads(hub, "adapter_model.bin") == []
    assert downloads(hub, "adapter_config.json") == []  # refused from the file list alone


def test_oversized_adapter_is_refused_from_its_listed_size(hub, signature, hub_adapters):
    small = AdapterSource(signature, AllowList.of(["tester/*"]), max_bytes=10_000)
    hub.clear_requests()
    with pytest.raises(Refusal, match=r"adapter_model.safetensors is \d+\.\d MB, above this Space's limit"):
        small.fetch(hub_adapters.compass.repo_id)
    assert downloads(hub, "adapter_model.safetensors") == []


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("other-base", {"base_model_name_or_path": "meta-llama/Llama-3.2-1B"}, "trained on `meta-llama/Llama-3.2-1B`"),
        ("ia3", {"peft_type": "IA3"}, "only LoRA adapters are supported"),
        ("seq-cls", {"task_type": "SEQ_CLS"}, "a CAUSAL_LM adapter is needed"),
        ("llama-names", {"target_modules": ["q_proj", "k_proj", "v_proj"]}, "Phi-3 fuses them into qkv_proj"),
    ],
)
def test_adapters_whose_config_does_not_fit_are_refused_before_their_weights_download(
    hub, source, signature, tmp_path, name, changes, message
):
    config = lora_config(signature.names[0], **changes)
    push_folder(write_adapter_files(tmp_path / name, config, lora_tensors(signature)), f"tester/space-{name}")
    hub.clear_requests()
    with pytest.raises(Refusal, match=message):
        source.fetch(f"tester/space-{name}")
    assert downloads(hub, "adapter_model.safetensors") == []


def test_weights_that_do_not_fit_the_base_are_refused(source, signature, tmp_path, hub):
    config = lora_config(signature.names[0])
    folder = write_adapter_files(tmp_path / "shapes", config, lora_tensors(signature, in_features=64))
    push_folder(folder, "tester/space-wrong-shapes")
    with pytest.raises(Refusal, match=r"has shape \[2, 64\], which does not fit the base layer"):
        source.fetch("tester/space-wrong-shapes")
    tensors = lora_tensors(signature)
    import torch

    tensors["base_model.model.lm_head.weight"] = torch.zeros(4, 4)
    push_folder(write_adapter_files(tmp_path / "full", config, tensors), "tester/space-full-weights")
    with pytest.raises(Refusal, match="is not a LoRA matrix"):
        source.fetch("tester/space-full-weights")


def test_private_repo_without_access_gets_one_generic_message(hub, signature, tmp_path):
    alice = hub.create_user("alice")
    config = lora_config(signature.names[0])
    folder = write_adapter_files(tmp_path / "private", config, lora_tensors(signature))
    push_folder(folder, "alice/secret-lora", private=True, token=alice)
    allow = AllowList.of(["alice/*"])
    messages = []
    for token in (None, FAKE_TOKEN):  # no token, and a token of another user
        with pytest.raises(Refusal) as refusal:
            AdapterSource(signature, allow, token=token).fetch("alice/secret-lora")
        messages.append(str(refusal.value))
    missing = AdapterSource(signature, allow, token=FAKE_TOKEN)
    with pytest.raises(Refusal) as refusal:
        missing.fetch("alice/does-not-exist")
    assert messages[0] == messages[1] == str(refusal.value).replace("does-not-exist", "secret-lora")
    assert "HF_TOKEN secret" in messages[0]
    assert all(FAKE_TOKEN not in m and alice not in m for m in messages)
    # With the owner's token the same repo loads: the token is what makes the difference.
    assert AdapterSource(signature, allow, token=alice).fetch("alice/secret-lora").key.repo_id == "alice/secret-lora"


def test_a_local_directory_never_shadows_a_repo_id(source, hub_adapters, trained_adapters, tmp_path, monkeypatch):
    """A folder named like the repo (or like a bare name) in the working directory is never read."""
    import shutil

    shadow = tmp_path / "tester" / "space-compass"
    shutil.copytree(trained_adapters.terse, shadow)
    shutil.copytree(trained_adapters.terse, tmp_path / "adapters")
    monkeypatch.chdir(tmp_path)
    adapter = source.fetch("tester/space-compass")
    assert adapter.key.commit == hub_adapters.compass.commits["main"]
    assert tmp_path not in adapter.directory.resolve().parents
    with pytest.raises(Refusal, match="not a Hub repository id"):
        source.fetch("adapters")
    with pytest.raises(Refusal, match="not a Hub repository id"):
        source.fetch(str(shadow))


def test_a_pinned_commit_loads_from_the_cache_without_hub_calls_when_the_hub_is_slow(hub, source, hub_adapters):
    """C20: a 40-hex revision already in the cache is served with no request at all, even with a stalled Hub."""
    compass = hub_adapters.compass
    commit = compass.commits["step-12"]
    source.fetch(compass.repo_id, commit)  # cached (earlier tests may have cached it already)
    hub.faults.delay(path="/", seconds=30, count=None)
    hub.clear_requests()
    started = time.monotonic()
    adapter = source.fetch(compass.repo_id, commit)
    assert time.monotonic() - started < 5
    assert adapter.key.commit == commit and adapter.revision == commit
    assert hub.requests == []
    hub.faults.clear()
