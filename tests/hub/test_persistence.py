"""Storage survives restarts and crashes; the root is protected against misuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from phi3_lora_hub.local_hub import LocalHub, LocalHubError, root_credentials
from phi3_lora_hub.local_hub.blobs import BlobStore
from phi3_lora_hub.local_hub.objects import FileEntry
from phi3_lora_hub.local_hub.repos import AddFile, RepoMeta, RepoStore
from tests.hub.helpers import child_env, write_checkpoint


def test_content_survives_stop_and_start_on_the_same_port(hub, hub_mode, api, repo, tmp_path):
    files = write_checkpoint(tmp_path)
    api.upload_folder(folder_path=tmp_path, repo_id=repo)
    api.create_branch(repo, branch="ckpt/step-1")
    before = (api.model_info(repo).sha, [c.commit_id for c in api.list_repo_commits(repo)])
    port = hub.port
    hub.stop()
    assert not hub.running
    hub.start()
    assert hub.port == port
    assert (api.model_info(repo).sha, [c.commit_id for c in api.list_repo_commits(repo)]) == before
    assert {b.name for b in api.list_repo_refs(repo).branches} == {"main", "ckpt/step-1"}
    with open(api.hf_hub_download(repo, "adapter_model.safetensors", force_download=True), "rb") as handle:
        assert handle.read() == files["adapter_model.safetensors"]


def test_a_new_server_on_the_same_root_serves_the_same_repos(tmp_path, hub_online):
    root = tmp_path / "hub"
    with LocalHub(root) as first:
        api = HfApi(endpoint=first.url, token=first.write_token)
        api.create_repo("tester/kept")
        api.upload_file(path_or_fileobj=b"data", path_in_repo="d.txt", repo_id="tester/kept")
        sha = api.model_info("tester/kept").sha
    with LocalHub(root) as second:
        api = HfApi(endpoint=second.url, token=second.write_token)
        assert api.model_info("tester/kept").sha == sha


def test_only_one_server_per_root_and_only_hub_roots(tmp_path):
    with LocalHub(tmp_path / "hub"), pytest.raises(LocalHubError, match="Another local hub is serving"):
        LocalHub(tmp_path / "hub").start()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    with pytest.raises(LocalHubError, match="not a local hub root"):
        LocalHub(tmp_path / "project").start()
    assert sorted(os.listdir(tmp_path / "project")) == ["notes.txt"]


def test_port_in_use_gives_an_actionable_error(tmp_path, hub):
    with pytest.raises(LocalHubError, match=f"Port {hub.port} .* is in use"):
        LocalHub(tmp_path / "other", port=hub.port).start()


def test_a_failed_commit_write_leaves_the_branch_on_a_complete_commit(tmp_path, monkeypatch):
    store = RepoStore(tmp_path, BlobStore(tmp_path))
    repo = store.create(RepoMeta("model", "tester/crash"), author="tester")
    head = repo.resolve("main")
    data = b"content"
    entry = FileEntry.regular(store.blobs.put_bytes(data), data)

    import phi3_lora_hub.local_hub.repos as repos_module

    real_write = repos_module.atomic_write_json

    def crash_on_refs(path: Path, value: object) -> None:
        if path.name == "refs.json":
            raise OSError("disk full")
        real_write(path, value)

    monkeypatch.setattr(repos_module, "atomic_write_json", crash_on_refs)
    with pytest.raises(OSError, match="disk full"):
        repo.create_commit("main", [AddFile("a.txt", entry)], title="lost", message="", author="tester")
    monkeypatch.undo()
    reopened = RepoStore(tmp_path, BlobStore(tmp_path)).open("model", "tester/crash")
    assert reopened.resolve("main") == head
    commit, _ = reopened.create_commit("main", [AddFile("a.txt", entry)], title="ok", message="", author="tester")
    assert reopened.resolve("main").parents == (head.oid,) and commit.tree["a.txt"] == entry


def test_killed_server_process_leaves_a_usable_root(tmp_path, hub_online):
    """A SIGKILLed server, with the leftovers interrupted writes would leave, restarts consistent and clean."""
    root = tmp_path / "hub"
    script = f"""
import sys, threading
from phi3_lora_hub.local_hub import LocalHub
hub = LocalHub({str(root)!r}).start()
print(hub.url, flush=True)
threading.Event().wait()
"""
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        url = server.stdout.readline().strip()
        api = HfApi(endpoint=url, token=root_credentials(root).write_token)
        api.create_repo("tester/killed")
        for step in range(3):
            api.create_commit("tester/killed", [CommitOperationAdd("s.txt", str(step).encode())], commit_message="s")
        sha = api.model_info("tester/killed").sha
        # What a kill in the middle of a ref update and of a blob upload leaves behind:
        (root / "repos" / "models" / "tester" / "killed" / f".refs.json.tmp-{'0' * 32}").write_text("{torn")
        (root / "tmp" / "blob-partial").write_bytes(b"half an upload")
    finally:
        server.kill()
        server.wait()
    with LocalHub(root) as restarted:
        api = HfApi(endpoint=restarted.url, token=restarted.write_token)
        assert api.model_info("tester/killed").sha == sha
        assert len(api.list_repo_commits("tester/killed")) == 4
    assert not list(root.rglob("*.tmp-*")) and not (root / "tmp" / "blob-partial").exists()
