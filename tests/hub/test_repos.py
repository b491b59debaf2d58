"""Repositories through the unmodified huggingface_hub client: identity, lifecycle, refs, history, listings."""

from __future__ import annotations

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError


def test_whoami_reports_the_user_and_role_of_each_token(hub):
    assert HfApi().whoami()["name"] == "tester"
    assert HfApi(token=hub.read_token).whoami()["auth"]["accessToken"]["role"] == "read"
    token = hub.create_user("alice", orgs=("lab",))
    me = HfApi(token=token).whoami()
    assert (me["name"], me["auth"]["accessToken"]["role"], [org["name"] for org in me["orgs"]]) == (
        "alice",
        "write",
        ["lab"],
    )


def test_bad_token_is_401_and_never_mistaken_for_a_missing_repo(hub, repo):
    bad = HfApi(token="hf_not_a_token")
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as whoami_error:
        bad.whoami()
    assert whoami_error.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as info_error:
        bad.model_info(repo)
    assert info_error.value.response.status_code == 401
    assert not isinstance(info_error.value, RepositoryNotFoundError)
    assert info_error.value.response.headers["X-Error-Code"] == "Unauthorized"


def test_read_only_token_can_read_but_every_write_is_403(hub, repo):
    reader = HfApi(token=hub.read_token)
    assert reader.model_info(repo).id == repo
    writes = [
        lambda: reader.create_repo(hub.new_repo_id()),
        lambda: reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo),
        lambda: reader.create_branch(repo, branch="b"),
        lambda: reader.delete_repo(repo),
    ]
    for write in writes:
        with pytest.raises(HfHubHTTPError, match="read-only") as error:
            write()
        assert error.value.response.status_code == 403
    assert [c.title for c in reader.list_repo_commits(repo)] == ["initial commit"]


def test_writing_into_another_users_namespace_is_403(hub, repo):
    mallory = HfApi(token=hub.create_user("mallory"))
    with pytest.raises(HfHubHTTPError, match="cannot write in namespace 'tester'") as error:
        mallory.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    assert error.value.response.status_code == 403


def test_create_repo_fills_the_namespace_and_answers_409_with_the_url(hub, api):
    name = hub.new_repo_id().split("/")[1]
    url = api.create_repo(name)  # bare name, as Trainer passes it: the server takes the namespace from the token
    assert url.repo_id == f"tester/{name}"
    assert url == f"{hub.url}/tester/{name}"
    assert api.create_repo(name, exist_ok=True).repo_id == url.repo_id
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(name)
    assert error.value.response.status_code == 409
    assert error.value.response.json()["url"] == url


def test_new_repo_has_an_initial_commit_with_gitattributes(api, repo):
    info = api.model_info(repo, files_metadata=True)
    assert len(info.sha) == 40 and int(info.sha, 16) >= 0
    assert [sibling.rfilename for sibling in info.siblings] == [".gitattributes"]
    with open(api.hf_hub_download(repo, ".gitattributes")) as handle:
        assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in handle.read().splitlines()
    commits = api.list_repo_commits(repo)
    assert [(c.title, c.commit_id) for c in commits] == [("initial commit", info.sha)]


def test_delete_repo_and_missing_ok(api, hub_repo_id):
    api.create_repo(hub_repo_id)
    api.delete_repo(hub_repo_id)
    assert not api.repo_exists(hub_repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(hub_repo_id)
    api.delete_repo(hub_repo_id, missing_ok=True)
    api.create_repo(hub_repo_id)  # the name is free again
    assert [c.title for c in api.list_repo_commits(hub_repo_id)] == ["initial commit"]


def test_dataset_and_space_repos(hub, api):
    dataset = hub.new_repo_id("votes")
    url = api.create_repo(dataset, repo_type="dataset")
    assert url == f"{hub.url}/datasets/{dataset}" and url.repo_type == "dataset"
    api.upload_file(path_or_fileobj=b'{"vote": 1}\n', path_in_repo="votes.jsonl", repo_id=dataset, repo_type="dataset")
    assert api.list_repo_files(dataset, repo_type="dataset") == [".gitattributes", "votes.jsonl"]
    assert not api.repo_exists(dataset)  # a dataset is not a model

    space = hub.new_repo_id("compare")
    assert api.create_repo(space, repo_type="space", space_sdk="gradio").repo_type == "space"
    assert api.space_info(space).sdk == "gradio"


def test_space_without_sdk_is_refused(raw, hub):
    response = raw.post(
        "/api/repos/create",
        json={"name": "s", "type": "space"},
        headers={"Authorization": f"Bearer {hub.write_token}"},
    )
    assert (response.status_code, response.headers["X-Error-Code"]) == (400, "BadRequest")


def test_private_repo_is_invisible_outside_its_namespace(hub, api, hub_repo_id):
    api.create_repo(hub_repo_id, private=True)
    assert api.model_info(hub_repo_id).private is True
    assert HfApi(token=hub.read_token).model_info(hub_repo_id).private is True  # same user, read role
    outsider = HfApi(token=hub.create_user("eve"))
    with pytest.raises(RepositoryNotFoundError):
        outsider.model_info(hub_repo_id)
    assert not outsider.file_exists(hub_repo_id, ".gitattributes")
    api.update_repo_settings(hub_repo_id, private=False)
    assert outsider.model_info(hub_repo_id).private is False


def test_org_members_can_write_in_the_org(hub):
    member = HfApi(token=hub.create_user("bob", orgs=("team",)))
    repo_id = hub.new_repo_id("shared", namespace="team")
    assert member.create_repo(repo_id).repo_id == repo_id
    member.upload_file(path_or_fileobj=b"hi", path_in_repo="a.txt", repo_id=repo_id)
    assert member.list_repo_files(repo_id) == [".gitattributes", "a.txt"]


def test_branches_tags_and_refs(api, repo):
    api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id=repo)
    head = api.model_info(repo).sha
    api.create_branch(repo, branch="dev")
    api.create_branch(repo, branch="dev", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as error:
        api.create_branch(repo, branch="dev")
    assert error.value.response.status_code == 409
    api.create_tag(repo, tag="v1.0")
    refs = api.list_repo_refs(repo)
    assert {(b.name, b.ref, b.target_commit) for b in refs.branches} == {
        ("main", "refs/heads/main", head),
        ("dev", "refs/heads/dev", head),
    }
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", head)]
    assert refs.converts == [] and refs.pull_requests is None
    assert api.model_info(repo, revision="v1.0").sha == head
    assert api.model_info(repo, revision="refs/heads/dev").sha == head
    assert api.model_info(repo, revision=head[:7]).sha == head  # abbreviated commit id
    api.delete_branch(repo, branch="dev")
    api.delete_tag(repo, tag="v1.0")
    refs = api.list_repo_refs(repo)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []


def test_branch_from_a_starting_point_and_invalid_names(api, repo):
    first = api.model_info(repo).sha
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id=repo)
    api.create_branch(repo, branch="old", revision=first)
    assert api.model_info(repo, revision="old").sha == first
    for bad in ("has space", "a..b", "-x", "x.lock"):
        with pytest.raises(HfHubHTTPError) as error:
            api.create_branch(repo, branch=bad)
        assert error.value.response.status_code == 400
    with pytest.raises(RevisionNotFoundError):
        api.create_branch(repo, branch="new", revision="nope")


def test_unknown_revision_and_missing_repo(api, repo, hub):
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo, revision="nope")
    assert not api.revision_exists(repo, "nope")
    assert api.revision_exists(repo, "main")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(hub.new_repo_id())
    assert not api.repo_exists(hub.new_repo_id())


def test_commit_listing_is_newest_first_and_paginated(hub, api, repo):
    hub.settings.commits_page_size = 2
    for step in range(1, 5):
        api.create_commit(
            repo,
            [CommitOperationAdd("step.txt", str(step).encode())],
            commit_message=f"step {step}",
            commit_description=f"details {step}",
        )
    commits = api.list_repo_commits(repo, formatted=True)
    assert [c.title for c in commits] == ["step 4", "step 3", "step 2", "step 1", "initial commit"]
    assert commits[0].message == "details 4" and commits[0].authors == ["tester"]
    assert commits[0].formatted_title == "step 4"
    assert commits[0].created_at >= commits[-1].created_at
    head = commits[0].commit_id
    pages = [r.route.rsplit("/", 1)[-1] for r in hub.requests if f"/api/models/{repo}/commits/" in r.route]
    assert pages == ["main", head, head]  # 5 commits, 2 per page; later pages are pinned to the commit


def test_tree_listing_recursive_paginated_and_with_last_commit(hub, api, repo):
    api.create_commit(
        repo,
        [CommitOperationAdd(path, path.encode()) for path in ("a.txt", "dir/b.txt", "dir/sub/c.txt")],
        commit_message="add files",
    )
    api.create_commit(repo, [CommitOperationAdd("dir/b.txt", b"changed")], commit_message="change b")
    hub.settings.tree_page_size = 2
    top = list(api.list_repo_tree(repo))
    assert [(type(e).__name__, e.path) for e in top] == [
        ("RepoFolder", "dir"),
        ("RepoFile", ".gitattributes"),
        ("RepoFile", "a.txt"),
    ]
    everything = [e.path for e in api.list_repo_tree(repo, recursive=True)]
    assert everything == ["dir", "dir/sub", ".gitattributes", "a.txt", "dir/b.txt", "dir/sub/c.txt"]
    assert api.list_repo_files(repo) == [".gitattributes", "a.txt", "dir/b.txt", "dir/sub/c.txt"]
    assert [e.path for e in api.list_repo_tree(repo, path_in_repo="dir/sub")] == ["dir/sub/c.txt"]
    tree_pages = [r for r in hub.requests if f"/api/models/{repo}/tree/" in r.route and "recursive=true" in r.path]
    assert len(tree_pages) == 3 + 3  # 6 recursive entries (4 files, 2 folders) in 3 pages, listed twice
    expanded = {e.path: e for e in api.list_repo_tree(repo, path_in_repo="dir", expand=True)}
    assert expanded["dir/b.txt"].last_commit.title == "change b"
    assert expanded["dir/sub"].last_commit.title == "add files"


def test_missing_folder_in_tree_is_entry_not_found(api, repo):
    from huggingface_hub.errors import RemoteEntryNotFoundError

    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(repo, path_in_repo="additional_chat_templates"))


def test_paths_info_returns_existing_files_and_folders_only(api, repo):
    api.create_commit(repo, [CommitOperationAdd("dir/b.txt", b"b")], commit_message="add")
    info = api.get_paths_info(repo, ["dir", "dir/b.txt", "missing.txt"], expand=True)
    assert [(type(e).__name__, e.path) for e in info] == [("RepoFolder", "dir"), ("RepoFile", "dir/b.txt")]
    assert info[1].size == 1 and info[1].last_commit.title == "add"


def test_list_models_by_author(hub, api, repo):
    listed = [m.id for m in api.list_models(author="tester")]
    assert repo in listed
    assert all(model_id.startswith("tester/") for model_id in listed)


def test_client_quirk_exist_ok_after_403_misses_branch_names_with_a_slash(hub, api, repo):
    """huggingface_hub 2.4 compares the *quoted* name with the refs after a 403 (hf_api.py create_branch).

    So with a read-only token, ``create_branch(exist_ok=True)`` accepts an existing "plain" branch but raises
    for an existing "ckpt/step-1". Code that creates branches with '/' must not rely on that fallback.
    """
    api.create_branch(repo, branch="plain")
    api.create_branch(repo, branch="ckpt/step-1")
    reader = HfApi(token=hub.read_token)
    reader.create_branch(repo, branch="plain", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as error:
        reader.create_branch(repo, branch="ckpt/step-1", exist_ok=True)
    assert error.value.response.status_code == 403
