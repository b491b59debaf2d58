"""The request sequences of hub-protocol.md §6, as the unmodified client sends them, in both upload modes."""

from __future__ import annotations

from huggingface_hub import ModelCard, hf_hub_download, snapshot_download

from tests.hub.helpers import write_checkpoint


def _sequence(hub, repo: str) -> list[tuple[str, str, str | None]]:
    """``(method, endpoint, user)`` of each request since the last clear, with the repo id and shas elided."""
    sequence = []
    for record in hub.requests:
        route = record.route.replace(repo, "{repo}")
        for marker in ("/resolve/", "/tree/"):
            if marker in route:  # keep the endpoint and file, drop the revision segment
                head, _, tail = route.partition(marker)
                route = f"{head}{marker}{{rev}}/{tail.partition('/')[2]}".rstrip("/")
        if route.startswith("/_lfs/"):
            route = "/_lfs/" + ("verify" if route.endswith("/verify") else "object")
        sequence.append((record.method, route, record.user))
    hub.clear_requests()
    return sequence


def test_push_sequences(hub, hub_mode, api, repo, tmp_path):
    write_checkpoint(tmp_path)
    hub.clear_requests()
    api.upload_folder(folder_path=tmp_path, repo_id=repo)
    preupload = ("POST", "/api/models/{repo}/preupload/main", "tester")
    commit = ("POST", "/api/models/{repo}/commit/main", "tester")
    batch = ("POST", "/{repo}.git/info/lfs/objects/batch", "tester")
    if hub_mode == "lfs":  # the LFS PUT and verify are pre-signed: no user
        lfs = [batch, ("PUT", "/_lfs/object", None), ("POST", "/_lfs/verify", None)]
        assert _sequence(hub, repo) == [preupload, *lfs, commit]
    else:
        assert _sequence(hub, repo) == [preupload, commit]

    api.upload_folder(folder_path=tmp_path, repo_id=repo)  # unchanged: no upload, no commit
    info = ("GET", "/api/models/{repo}/revision/main", "tester")
    assert _sequence(hub, repo) == ([preupload, batch, info] if hub_mode == "lfs" else [preupload, info])

    ModelCard("---\nlicense: mit\n---\n# card").push_to_hub(repo)
    validate_anonymous, validate = ("POST", "/api/validate-yaml", None), ("POST", "/api/validate-yaml", "tester")
    assert _sequence(hub, repo) == [validate_anonymous, validate, preupload, commit]


def test_download_sequences(hub, hub_mode, api, repo, tmp_path):
    api.create_branch(repo, branch="step-2")
    write_checkpoint(tmp_path / "ckpt")
    api.upload_folder(folder_path=tmp_path / "ckpt", repo_id=repo, revision="step-2", path_in_repo="last-checkpoint")
    hub.clear_requests()

    hf_hub_download(repo, "last-checkpoint/adapter_config.json", revision="step-2", cache_dir=tmp_path / "c")
    file_url = "/{repo}/resolve/{rev}/last-checkpoint/adapter_config.json"
    assert _sequence(hub, repo) == [("HEAD", file_url, "tester"), ("GET", file_url, "tester")]

    snapshot_download(repo, revision="step-2", allow_patterns=["last-checkpoint/*.json"], cache_dir=tmp_path / "s")
    assert _sequence(hub, repo) == [
        ("GET", "/api/models/{repo}/revision/step-2", "tester"),
        ("GET", "/api/models/{repo}/tree/{rev}", "tester"),  # recursive listing at the resolved commit
        ("HEAD", file_url, "tester"),  # only the files matching allow_patterns
        ("GET", file_url, "tester"),
    ]
    snapshot_download(repo, revision="step-2", allow_patterns=["last-checkpoint/*.json"], cache_dir=tmp_path / "s")
    assert _sequence(hub, repo) == [("GET", "/api/models/{repo}/revision/step-2", "tester")]  # all cached
