"""Pushing content in both client modes: Xet-enabled client + regular-only server, and Xet off + LFS server."""

from __future__ import annotations

import hashlib

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete, HfApi, ModelCard
from huggingface_hub.errors import BadRequestError, HfHubHTTPError, RemoteEntryNotFoundError

from tests.hub.helpers import write_checkpoint


def _calls(hub, repo_id: str) -> list[str]:
    """The requests made for ``repo_id`` since the last ``clear_requests``, as "METHOD kind"."""
    kinds = ("preupload", "commit/", "lfs/objects/batch", "/_lfs/", "/revision/", "/tree/", "xet-")
    calls = []
    for record in hub.requests:
        if repo_id in record.path:
            kind = next((k.strip("/") for k in kinds if k in record.path), record.route)
            calls.append(f"{record.method} {kind}")
    return calls


def test_upload_folder_round_trip_and_request_sequence(hub, hub_mode, api, repo, tmp_path):
    files = write_checkpoint(tmp_path)
    hub.clear_requests()
    info = api.upload_folder(folder_path=tmp_path, repo_id=repo, commit_message="step 1")
    assert len(info.oid) == 40 and info.commit_url == f"{hub.url}/{repo}/commit/{info.oid}"
    calls = _calls(hub, repo)
    if hub_mode == "lfs":
        assert calls[:4] == ["POST preupload", "POST lfs/objects/batch", "PUT _lfs", "POST _lfs"]
    else:
        assert not any("lfs" in call or "xet" in call for call in calls)
    assert "POST commit" in calls

    tree = {entry.path: entry for entry in api.list_repo_tree(repo, recursive=True) if hasattr(entry, "size")}
    weights = tree["adapter_model.safetensors"]
    if hub_mode == "lfs":
        assert weights.lfs.sha256 == hashlib.sha256(files["adapter_model.safetensors"]).hexdigest()
    else:
        assert weights.lfs is None
    for name, content in files.items():
        with open(api.hf_hub_download(repo, name), "rb") as handle:
            assert handle.read() == content


def test_unchanged_upload_makes_no_commit(hub, hub_mode, api, repo, tmp_path):
    write_checkpoint(tmp_path)
    first = api.upload_folder(folder_path=tmp_path, repo_id=repo)
    hub.clear_requests()
    again = api.upload_folder(folder_path=tmp_path, repo_id=repo)
    assert again.oid == first.oid
    calls = _calls(hub, repo)
    assert "POST commit" not in calls and "PUT _lfs" not in calls
    assert len(api.list_repo_commits(repo)) == 2


def test_upload_file_to_a_branch_with_a_slash(hub_mode, api, repo):
    api.create_branch(repo, branch="ckpt/step-10")
    info = api.upload_file(path_or_fileobj=b"\0weights", path_in_repo="w.bin", repo_id=repo, revision="ckpt/step-10")
    assert api.model_info(repo, revision="ckpt/step-10").sha == info.oid
    assert "w.bin" not in api.list_repo_files(repo)  # main is untouched
    assert api.list_repo_files(repo, revision="ckpt/step-10") == [".gitattributes", "w.bin"]
    with open(api.hf_hub_download(repo, "w.bin", revision="ckpt/step-10"), "rb") as handle:
        assert handle.read() == b"\0weights"
    newest = api.list_repo_commits(repo, revision="ckpt/step-10")[0]
    assert newest.title == "Upload w.bin with huggingface_hub"


def test_upload_to_a_missing_branch_is_revision_not_found(api, repo):
    from huggingface_hub.errors import RevisionNotFoundError

    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo, revision="no-such-branch")


def test_delete_file_and_folder(hub_mode, api, repo, tmp_path):
    write_checkpoint(tmp_path)
    api.upload_folder(folder_path=tmp_path, repo_id=repo)
    api.delete_file("adapter_config.json", repo)
    api.delete_folder("logs", repo)
    assert api.list_repo_files(repo) == [".gitattributes", "adapter_model.safetensors"]
    with pytest.raises(RemoteEntryNotFoundError, match="A file with this name doesn't exist"):
        api.delete_file("adapter_config.json", repo)
    with pytest.raises(RemoteEntryNotFoundError):
        api.delete_folder("logs", repo)


def test_stale_parent_commit_is_412_and_changes_nothing(hub_mode, api, repo):
    base = api.model_info(repo).sha
    api.upload_file(path_or_fileobj=b"first", path_in_repo="a.txt", repo_id=repo, parent_commit=base)
    head = api.model_info(repo).sha
    with pytest.raises(HfHubHTTPError, match="A commit has happened since") as error:
        api.upload_file(path_or_fileobj=b"second", path_in_repo="a.txt", repo_id=repo, parent_commit=base)
    assert error.value.response.status_code == 412
    assert api.model_info(repo).sha == head
    api.upload_file(path_or_fileobj=b"second", path_in_repo="b.txt", repo_id=repo, parent_commit=head[:7])


def test_copy_move_and_pull_request(hub_mode, api, repo):
    api.upload_file(path_or_fileobj=b"\0" * 64, path_in_repo="w.safetensors", repo_id=repo)
    api.upload_file(path_or_fileobj=b"text", path_in_repo="a.txt", repo_id=repo)
    api.create_commit(
        repo,
        [
            CommitOperationCopy("w.safetensors", "copy/w.safetensors"),
            CommitOperationCopy("a.txt", "copy/a.txt"),
            CommitOperationDelete("a.txt"),
        ],
        commit_message="copy",
    )
    assert api.list_repo_files(repo) == [".gitattributes", "copy/a.txt", "copy/w.safetensors", "w.safetensors"]
    pr = api.create_commit(repo, [CommitOperationAdd("proposal.txt", b"p")], commit_message="proposal", create_pr=True)
    assert (pr.pr_num, pr.pr_revision) == (1, "refs/pr/1")
    assert "proposal.txt" not in api.list_repo_files(repo)
    assert "proposal.txt" in api.list_repo_files(repo, revision="refs/pr/1")
    refs = api.list_repo_refs(repo, include_pull_requests=True)
    assert [(ref.ref, ref.target_commit) for ref in refs.pull_requests] == [("refs/pr/1", pr.oid)]


def test_invalid_paths_and_payloads_are_400(hub, api, repo, raw):
    auth = {"Authorization": f"Bearer {hub.write_token}", "Content-Type": "application/x-ndjson"}
    header = b'{"key": "header", "value": {"summary": "x"}}\n'
    cases = [
        header + b'{"key": "file", "value": {"path": "../escape", "content": "eA==", "encoding": "base64"}}\n',
        header + b'{"key": "file", "value": {"path": "a/.git/config", "content": "eA==", "encoding": "base64"}}\n',
        header + b'{"key": "file", "value": {"path": "a.txt", "content": "!!", "encoding": "base64"}}\n',
        b'{"key": "file", "value": {"path": "a.txt", "content": "eA==", "encoding": "base64"}}\n',
        header + b"not json\n",
    ]
    for body in cases:
        response = raw.post(f"/api/models/{repo}/commit/main", content=body, headers=auth)
        assert (response.status_code, response.headers["X-Error-Code"]) == (400, "BadRequest"), body
    # A file cannot shadow a folder, nor the other way round.
    api.upload_file(path_or_fileobj=b"x", path_in_repo="dir/a.txt", repo_id=repo)
    with pytest.raises(BadRequestError, match="is a file"):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="dir", repo_id=repo)
    assert api.list_repo_files(repo) == [".gitattributes", "dir/a.txt"]


def test_lfs_file_must_have_been_uploaded_to_this_repo(hub, raw, repo):
    oid = hashlib.sha256(b"never uploaded").hexdigest()
    body = (
        b'{"key": "header", "value": {"summary": "x"}}\n'
        + f'{{"key": "lfsFile", "value": {{"path": "w.bin", "algo": "sha256", "oid": "{oid}", "size": 14}}}}\n'.encode()
    )
    response = raw.post(
        f"/api/models/{repo}/commit/main",
        content=body,
        headers={"Authorization": f"Bearer {hub.write_token}", "Content-Type": "application/x-ndjson"},
    )
    assert (response.status_code, response.headers["X-Error-Code"]) == (422, "LfsObjectNotFound")


def test_lfs_upload_urls_are_signed(hub, raw, repo):
    oid = hashlib.sha256(b"payload").hexdigest()
    hub.settings.regular_only = False
    batch = raw.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": 7}]},
        headers={"Authorization": f"Bearer {hub.write_token}"},
    ).json()
    href = batch["objects"][0]["actions"]["upload"]["href"]
    forged = raw.put(href.replace("sig=", "sig=0"), content=b"payload")
    assert (forged.status_code, forged.headers["X-Error-Code"]) == (403, "Forbidden")
    wrong = raw.put(href, content=b"PAYLOAD")
    assert (wrong.status_code, wrong.headers["X-Error-Code"]) == (400, "BadRequest")
    chunked = raw.put(href, content=iter([b"pay", b"load"]))  # a generator body is sent chunked
    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert chunked.status_code == 200
    again = raw.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": oid, "size": 7}]},
        headers={"Authorization": f"Bearer {hub.write_token}"},
    ).json()
    assert "actions" not in again["objects"][0]  # already stored: the client skips the upload


def test_multipart_lfs_upload(hub, api, repo, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    hub.settings.regular_only = False
    hub.settings.lfs_multipart_chunk_size = 1000
    content = bytes(range(256)) * 10  # 2560 bytes: 3 parts
    api.upload_file(path_or_fileobj=content, path_in_repo="big.bin", repo_id=repo)
    parts = [r for r in hub.requests if r.method == "PUT" and "/multipart/" in r.path and repo in r.path]
    assert len(parts) == 3
    with open(api.hf_hub_download(repo, "big.bin"), "rb") as handle:
        assert handle.read() == content


def test_gitignore_files_are_ignored(hub_mode, api, repo, tmp_path):
    api.upload_file(path_or_fileobj=b"*.log\ncache/\n", path_in_repo=".gitignore", repo_id=repo)
    (tmp_path / "cache").mkdir()
    for name in ("keep.txt", "debug.log", "cache/x.txt"):
        (tmp_path / name).write_text(name)
    api.upload_folder(folder_path=tmp_path, repo_id=repo)
    assert api.list_repo_files(repo) == [".gitattributes", ".gitignore", "keep.txt"]


def test_model_card_validate_and_push(hub, hub_mode, api, repo):
    card = ModelCard("---\nlicense: mit\nlibrary_name: peft\nbase_model: microsoft/Phi-3-mini-4k-instruct\n---\n# A")
    card.validate()
    card.push_to_hub(repo)
    info = api.model_info(repo)
    assert info.card_data.license == "mit" and info.library_name == "peft"
    bad = ModelCard("---\nlicense: [1, 2]\n---\n# B")
    with pytest.raises(ValueError, match='"license" must be a string'):
        bad.validate()
    with pytest.raises(ValueError, match=r"Invalid metadata in README\.md\.\n- \"license\" must be a string"):
        api.upload_file(path_or_fileobj=str(bad).encode(), path_in_repo="README.md", repo_id=repo)


@pytest.mark.parametrize(
    ("content", "repo_type", "error"),
    [
        ("---\nlicense: [unclosed\n---\n", "model", "Invalid YAML"),
        ("---\n- a list\n---\n", "model", "must be a YAML mapping"),
        ("---\ntags: {a: 1}\n---\n", "model", '"tags" must be a string or a list of strings'),
        ("---\nbase_model_relation: cousin\n---\n", "model", '"base_model_relation" must be one of'),
        ("---\nsdk: flask\n---\n", "space", '"sdk" must be one of'),
        ("---\nsdk: gradio\ntitle: Compare\n---\n", "space", None),
        ("# no metadata\n", "model", None),
    ],
)
def test_validate_yaml_answers_json_errors(raw, content, repo_type, error):
    response = raw.post("/api/validate-yaml", json={"content": content, "repoType": repo_type})
    body = response.json()  # JSON even on errors: the client parses it before checking the status
    if error is None:
        assert (response.status_code, body["errors"]) == (200, [])
    else:
        assert response.status_code == 400 and response.headers["X-Error-Code"] == "InvalidMetadata"
        assert any(error in item["message"] for item in body["errors"]), body


def test_other_users_cannot_push_even_with_a_valid_card(hub, repo):
    stranger = HfApi(token=hub.create_user("stranger"))
    with pytest.raises(HfHubHTTPError) as error:
        ModelCard("---\nlicense: mit\n---\n").push_to_hub(repo, token=stranger.token)
    assert error.value.response.status_code == 403


def test_xet_client_against_the_lfs_mode_server_fails_loudly(hub, api, repo, monkeypatch):
    """The combination to avoid (reliability doc F9/C14): hf_xet raises a builtins.ConnectionError."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", False)
    hub.settings.regular_only = False
    with pytest.raises(ConnectionError, match=r"501 Not Implemented.*xet-write-token"):
        api.upload_file(path_or_fileobj=b"\0" * 100, path_in_repo="w.safetensors", repo_id=repo)
    token_request = hub.requests[-1]
    assert (token_request.route.endswith("/xet-write-token/main"), token_request.error_code) == (True, "NotImplemented")
    assert api.list_repo_files(repo) == [".gitattributes"]
