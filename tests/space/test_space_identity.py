"""One adapter is one model, whatever commit it is reached by: a commit that leaves the weights byte-identical (a
card edit, e.g. ``space deploy`` linking the Space) gives one leaderboard row and one loaded copy, named after
every revision that points at it, also after a restart."""

from __future__ import annotations

import hashlib

import pytest

from phi3_lora_hub.arena.votes import SideRecord, VoteRecord
from phi3_lora_hub.model.identity import ModelRef
from phi3_lora_hub.space.base_model import load_base
from phi3_lora_hub.space.hub_adapters import AdapterSource
from phi3_lora_hub.space.leaderboard import rows
from phi3_lora_hub.space.registry import AdapterRegistry
from phi3_lora_hub.space.repo_policy import AllowList
from phi3_lora_hub.space.vote_store import VoteStore

REPO = "tester/space-identity"


@pytest.fixture
def moved_main(hub, trained_adapters):
    """The adapter at ``main`` and ``step-20`` (same weights), then a card-only commit that moves ``main``."""
    from huggingface_hub import HfApi
    from space_testing import push_adapter

    repo = push_adapter(REPO, {"main": trained_adapters.compass, "step-20": trained_adapters.compass})
    api = HfApi()
    card = api.upload_file(path_or_fileobj=b"# Compass\n\nLinks to a Space.\n", path_in_repo="README.md", repo_id=REPO)
    return repo.commits["main"], card.oid


def vote(left: ModelRef, right: ModelRef, kind: str = "leftvote") -> VoteRecord:
    sides = [
        SideRecord(ref, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
        for ref in (left, right)
    ]
    return VoteRecord(sides[0], sides[1], kind)


def test_commits_with_the_same_weights_are_one_model_loaded_once(tiny_model_dir, trained_adapters, moved_main):
    before, after = moved_main
    base = load_base(str(tiny_model_dir), dtype="float32")
    source = AdapterSource(base.signature, AllowList.of([REPO]))
    main, branch, old = source.fetch(REPO, "main"), source.fetch(REPO, "step-20"), source.fetch(REPO, before)
    assert (main.key.commit, branch.key.commit, old.key.commit) == (after, before, before)
    sha256 = hashlib.sha256((trained_adapters.compass / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert main.weights == branch.weights == old.weights == sha256  # the Hub's LFS sha256, or hashed from the cache
    assert main.ref.key == branch.ref.key == old.ref.key == f"{REPO}@sha256:{sha256}"
    assert (main.ref.name, branch.ref.name, old.ref.name) == ("main", "step-20", None)
    registry = AdapterRegistry(base.model, capacity=2)
    for adapter in (main, branch, old):
        registry.load(adapter)
    assert registry.stats.loads == 1 and len(registry.loaded()) == 1
    with registry.use([main, branch]) as entries:
        assert entries[0].name == entries[1].name


def test_one_leaderboard_row_names_every_revision_and_keeps_them_after_a_restart(tiny_model_dir, moved_main, tmp_path):
    from transformers import AutoModelForCausalLM

    from phi3_lora_hub.space.compat import BaseSignature

    signature = BaseSignature.of(AutoModelForCausalLM.from_pretrained(tiny_model_dir), [str(tiny_model_dir)])
    source = AdapterSource(signature, AllowList.of([REPO]))
    main, branch = source.fetch(REPO, "main"), source.fetch(REPO, "step-20")
    store = VoteStore(tmp_path, instance="first")
    store.add(vote(main.ref, ModelRef.base()))
    store.add(vote(ModelRef.base(), branch.ref, "tievote"))
    table = rows(store.records())
    assert [row.name for row in table] == [f"{REPO} @ main, step-20 ({branch.key.commit[:7]})", "base model"]
    assert (table[0].wins, table[0].ties, table[0].votes) == (1, 1, 2)
    restarted = rows(VoteStore(tmp_path, instance="second").records())  # names come from the records themselves
    assert [(row.key, row.name, row.votes) for row in restarted] == [(row.key, row.name, row.votes) for row in table]
    learned = rows(store.records()[:1], {main.ref.key: ["step-20"]})  # a name the Space saw, not yet in a vote
    assert learned[0].name == f"{REPO} @ main, step-20 ({main.key.commit[:7]})"


def test_the_space_names_a_model_after_every_listed_revision_at_a_commit_it_loaded(
    tiny_model_dir, moved_main, space_settings
):
    """A tag or branch pointing at a commit the Space loaded names that model too, though nobody picked it."""
    from huggingface_hub import HfApi

    from phi3_lora_hub.space.runtime import SpaceRuntime

    _, after = moved_main
    HfApi().create_tag(REPO, tag="v1", revision=after, exist_ok=True)
    runtime = SpaceRuntime(space_settings(), load_base(str(tiny_model_dir), dtype="float32"))
    try:
        main = runtime.contender(REPO, "main").adapter
        assert runtime.revision_names() == {main.ref.key: {"main"}}
        assert runtime.revision_choices(REPO) == ["main", "step-20", "v1"]
        assert runtime.revision_names() == {main.ref.key: {"main", "v1"}}
        runtime.contender(REPO, "step-20")  # the commit before the card edit: the same weights, the same model
        assert runtime.revision_names() == {main.ref.key: {"main", "step-20", "v1"}}
        assert runtime.registry.stats.loads == 1
    finally:
        runtime.close()
