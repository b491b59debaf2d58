"""Downloads: resolve headers, exception classes, snapshots, range requests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hub.helpers import write_checkpoint


@pytest.fixture
def filled_repo(hub_mode, api, repo, tmp_path) -> tuple[str, dict[str, bytes]]:
    files = write_checkpoint(tmp_path / "root")
    api.upload_folder(folder_path=tmp_path / "root", repo_id=repo)
    checkpoint = write_checkpoint(tmp_path / "ckpt", step=2)
    api.upload_folder(folder_path=tmp_path / "ckpt", repo_id=repo, path_in_repo="last-checkpoint")
    files.update({f"last-checkpoint/{name}": content for name, content in checkpoint.items()})
    return repo, files


def test_hf_hub_download_hit_and_error_classes(hub, filled_repo, tmp_path):
    repo, files = filled_repo
    path = hf_hub_download(repo, "adapter_model.safetensors", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == files["adapter_model.safetensors"]
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo, "missing.json", cache_dir=tmp_path / "cache")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "adapter_config.json", revision="nope", cache_dir=tmp_path / "cache")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(hub.new_repo_id(), "adapter_config.json", cache_dir=tmp_path / "cache")


def test_file_exists(filled_repo, api, hub):
    repo, _ = filled_repo
    assert api.file_exists(repo, "last-checkpoint/adapter_config.json")
    assert not api.file_exists(repo, "adapter_model.bin")
    assert not api.file_exists(repo, "adapter_config.json", revision="nope")
    assert not api.file_exists(hub.new_repo_id(), "adapter_config.json")


def test_resolve_headers(hub, filled_repo, raw):
    repo, files = filled_repo
    head = raw.head(f"/{repo}/resolve/main/logs/notes.txt")
    commit = head.headers["X-Repo-Commit"]
    assert len(commit) == 40 and commit == raw.get(f"/api/models/{repo}").json()["sha"]
    assert int(head.headers["Content-Length"]) == len(files["logs/notes.txt"])
    git_oid = hashlib.sha1(b"blob %d\0" % len(files["logs/notes.txt"]) + files["logs/notes.txt"]).hexdigest()
    assert head.headers["ETag"] == f'"{git_oid}"'  # regular files: git blob id, as on the Hub
    assert not any(name.lower().startswith("x-xet") for name in head.headers)
    weights = raw.head(f"/{repo}/resolve/{commit}/adapter_model.safetensors")
    if not hub.settings.regular_only:  # LFS files: sha256 as ETag and linked size
        sha256 = hashlib.sha256(files["adapter_model.safetensors"]).hexdigest()
        assert weights.headers["X-Linked-Etag"] == weights.headers["ETag"] == f'"{sha256}"'
    missing = raw.head(f"/{repo}/resolve/main/missing.bin")
    assert (missing.status_code, missing.headers["X-Error-Code"]) == (404, "EntryNotFound")
    assert missing.headers["X-Repo-Commit"] == commit  # lets the client cache the absence


def test_range_requests(filled_repo, raw):
    repo, files = filled_repo
    content = files["adapter_model.safetensors"]
    partial = raw.get(f"/{repo}/resolve/main/adapter_model.safetensors", headers={"Range": "bytes=100-"})
    assert partial.status_code == 206 and partial.content == content[100:]
    assert partial.headers["Content-Range"] == f"bytes 100-{len(content) - 1}/{len(content)}"
    assert (
        raw.get(f"/{repo}/resolve/main/adapter_model.safetensors", headers={"Range": "bytes=-4"}).content
        == (content[-4:])
    )
    beyond = raw.get(f"/{repo}/resolve/main/adapter_model.safetensors", headers={"Range": f"bytes={len(content)}-"})
    assert (beyond.status_code, beyond.headers["Content-Range"]) == (416, f"bytes */{len(content)}")


def test_snapshot_download_all_and_with_allow_patterns(filled_repo, tmp_path):
    repo, files = filled_repo
    everything = Path(snapshot_download(repo, cache_dir=tmp_path / "a"))
    assert {p.relative_to(everything).as_posix() for p in everything.rglob("*") if p.is_file()} == {
        ".gitattributes",
        *files,
    }
    only = Path(snapshot_download(repo, allow_patterns=["last-checkpoint/*"], cache_dir=tmp_path / "b"))
    fetched = {p.relative_to(only).as_posix(): p.read_bytes() for p in only.rglob("*") if p.is_file()}
    assert fetched == {name: content for name, content in files.items() if name.startswith("last-checkpoint/")}


def test_download_at_a_revision_with_a_slash_and_a_commit(api, repo, tmp_path):
    api.create_branch(repo, branch="ckpt/step-10")
    first = api.upload_file(path_or_fileobj=b"10", path_in_repo="step.txt", repo_id=repo, revision="ckpt/step-10")
    api.upload_file(path_or_fileobj=b"11", path_in_repo="step.txt", repo_id=repo, revision="ckpt/step-10")
    cache = tmp_path / "cache"
    assert Path(hf_hub_download(repo, "step.txt", revision="ckpt/step-10", cache_dir=cache)).read_text() == "11"
    assert Path(hf_hub_download(repo, "step.txt", revision=first.oid, cache_dir=cache)).read_text() == "10"
    snapshot = Path(snapshot_download(repo, revision="ckpt/step-10", cache_dir=cache))
    assert (snapshot / "step.txt").read_text() == "11"


def test_missing_file_is_an_entry_not_found_for_transformers_too(filled_repo, tmp_path):
    repo, _ = filled_repo
    with pytest.raises(EntryNotFoundError):  # the base class transformers and peft catch
        hf_hub_download(repo, "tokenizer.model", cache_dir=tmp_path)


def test_bad_token_on_download_is_not_repository_not_found(hub, filled_repo, tmp_path):
    repo, _ = filled_repo
    with pytest.raises(HfHubHTTPError) as error:
        hf_hub_download(repo, "adapter_config.json", token="hf_wrong", cache_dir=tmp_path)
    assert not isinstance(error.value, RepositoryNotFoundError)
    assert "401" in str(error.value)
    path = hf_hub_download(repo, "adapter_config.json", token=hub.read_token, cache_dir=tmp_path)
    assert Path(path).is_file()
