"""Fault injection as the client sees it: error statuses, delays, dropped connections; and error-code coverage."""

from __future__ import annotations

import time

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, set_client_factory
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

from phi3_lora_hub.local_hub import FaultRule, RemoteHub
from tests.hub.helpers import write_checkpoint


@pytest.fixture
def short_client_timeout():
    """Give huggingface_hub a 1 s read timeout (it has none by default), restored afterwards."""
    set_client_factory(
        lambda: httpx2.Client(
            event_hooks={"request": [hf_request_event_hook]},
            follow_redirects=True,
            timeout=httpx2.Timeout(1.0, connect=5.0),
        )
    )
    yield
    set_client_factory(default_client_factory)


def _commits(api: HfApi, repo: str) -> list[str]:
    return [commit.title for commit in api.list_repo_commits(repo)]


def test_commit_500_fails_the_legacy_path_and_is_retried_by_the_pipeline(hub, hub_mode, api, repo, tmp_path):
    write_checkpoint(tmp_path)
    rule = hub.faults.fail("commit", status=500, count=1)
    if hub_mode == "lfs":  # single create_commit, not retried
        with pytest.raises(HfHubHTTPError) as error:
            api.upload_folder(folder_path=tmp_path, repo_id=repo, commit_message="push")
        assert error.value.response.status_code == 500
        assert error.value.response.headers["X-Error-Code"] == "InjectedFault"
        assert _commits(api, repo) == ["initial commit"]
    else:  # pipelined upload: the commit is retried after 1 s
        api.upload_folder(folder_path=tmp_path, repo_id=repo, commit_message="push")
        assert _commits(api, repo) == ["push", "initial commit"]
    assert rule.hits == 1 and not rule.active
    commits = [r for r in hub.requests if r.route.endswith("/commit/main") and repo in r.route]
    assert [r.status for r in commits] == ([500] if hub_mode == "lfs" else [500, 200])
    assert commits[0].fault == rule.id


def test_error_status_n_times_then_success_with_retry_after(hub, api, repo):
    hub.faults.fail("preupload", status=429, count=1, headers={"Retry-After": "0"})
    hub.faults.fail("preupload", status=503, count=1)
    started = time.monotonic()
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    assert time.monotonic() - started >= 2.0  # Retry-After 0 (+1 s), then a 1 s backoff
    preuploads = [r.status for r in hub.requests if "/preupload/" in r.path and repo in r.path]
    assert preuploads == [429, 503, 200]


def test_unlimited_failures_until_cleared(hub, api, repo):
    hub.faults.fail(method="POST", path=r"/commit/", status=500, count=None)
    for _ in range(3):
        with pytest.raises(HfHubHTTPError):
            api.create_commit(repo, [CommitOperationAdd("a.txt", b"a")], commit_message="x")
    hub.faults.clear()
    api.create_commit(repo, [CommitOperationAdd("a.txt", b"a")], commit_message="x")
    assert _commits(api, repo) == ["x", "initial commit"]


def test_delay_is_observed_and_can_time_out(hub, api, repo, short_client_timeout):
    hub.faults.delay("repo_info", seconds=0.3)
    started = time.monotonic()
    api.model_info(repo)
    assert time.monotonic() - started >= 0.3
    hub.faults.delay("whoami", seconds=2.0)
    with pytest.raises(httpx2.ReadTimeout):
        api.whoami()


def test_commit_that_lands_but_whose_answer_is_lost(hub, api, repo, short_client_timeout):
    hub.faults.delay("commit", seconds=2.0, stage="after")
    with pytest.raises(httpx2.ReadTimeout):
        api.create_commit(repo, [CommitOperationAdd("a.txt", b"a")], commit_message="landed")
    # The commit was applied before the delay: a client must verify before replaying it.
    assert _commits(api, repo) == ["landed", "initial commit"]


def test_dropped_connection_before_and_after_handling(hub, api, repo):
    hub.faults.drop("commit", stage="before")
    with pytest.raises(httpx2.RemoteProtocolError):
        api.create_commit(repo, [CommitOperationAdd("a.txt", b"a")], commit_message="lost")
    assert _commits(api, repo) == ["initial commit"]
    hub.faults.drop("commit", stage="after")
    with pytest.raises(httpx2.RemoteProtocolError):
        api.create_commit(repo, [CommitOperationAdd("a.txt", b"a")], commit_message="applied")
    assert _commits(api, repo) == ["applied", "initial commit"]
    dropped = [r for r in hub.requests if r.route.endswith("/commit/main") and repo in r.route]
    assert [r.status for r in dropped] == [None, None]


def test_download_cut_mid_body_is_retried(hub, api, repo, tmp_path):
    from huggingface_hub import hf_hub_download

    content = bytes(range(256)) * 64
    api.upload_file(path_or_fileobj=content, path_in_repo="w.bin", repo_id=repo)
    hub.faults.drop("resolve", method="GET", stage="mid_body")
    path = hf_hub_download(repo, "w.bin", cache_dir=tmp_path)
    with open(path, "rb") as handle:
        assert handle.read() == content
    # Two GETs: the first answer was cut halfway. The client resumes with a Range request only for the bytes
    # it already flushed (it reads 10 MB chunks), so this small file is fetched again from the start.
    gets = [r for r in hub.requests if r.method == "GET" and r.route.endswith("/w.bin")]
    assert len(gets) == 2 and gets[0].fault is not None and gets[1].fault is None


def test_server_down_then_back(hub, api, repo):
    hub.stop()
    with pytest.raises(httpx2.ConnectError):
        api.model_info(repo)
    hub.start()
    assert api.model_info(repo).id == repo


def test_fault_rules_are_validated():
    with pytest.raises(ValueError, match="needs a status, a drop or a positive delay"):
        FaultRule(path="/x")
    with pytest.raises(ValueError, match="either answers with a status or drops"):
        FaultRule(path="/x", status=500, drop=True)
    with pytest.raises(ValueError, match="unknown endpoint"):
        from phi3_lora_hub.local_hub.faults import rule_from_spec

        rule_from_spec("comit", None, None, status=500)


def test_faults_and_settings_over_http(hub, api, repo):
    remote = RemoteHub(hub.url, admin_token=hub.admin_token)
    rule = remote.faults.fail("repo_info", status=503, count=1)
    assert [r.id for r in remote.faults.rules] == [rule.id]
    with pytest.raises(HfHubHTTPError) as error:
        api.model_info(repo)
    assert error.value.response.status_code == 503
    assert remote.faults.rules[0].hits == 1
    remote.update_settings(tree_page_size=1)
    assert hub.settings.tree_page_size == 1
    remote.faults.fail("whoami", status=500, count=None)
    remote.faults.clear()
    assert api.whoami()["name"] == "tester"
    assert any(record.route == "/api/whoami-v2" for record in remote.requests())
    assert all("hf_" not in record.path for record in remote.requests())  # tokens never reach the log
    with pytest.raises(Exception, match="admin token"):
        RemoteHub(hub.url, admin_token="wrong").settings()


def test_every_error_response_carries_an_error_code(hub, api, repo, raw):
    tok = hub.write_token
    calls = [
        lambda: raw.get("/api/whoami-v2"),
        lambda: raw.get("/api/models/tester/does-not-exist"),
        lambda: raw.get(f"/api/models/{repo}/revision/nope"),
        lambda: raw.get(f"/api/models/{repo}/tree/main/nope"),
        lambda: raw.head(f"/{repo}/resolve/main/nope"),
        lambda: raw.get("/no/such/route/at/all"),
        lambda: raw.delete("/api/whoami-v2"),
        lambda: raw.get(f"/api/models/{repo}/xet-write-token/main"),
        lambda: raw.post("/api/repos/create", content=b"{not json"),
        lambda: raw.get("/api/models/tester/x", headers={"Authorization": "Basic abc"}),
        lambda: raw.get("/api/models/%2E%2E/%2E%2E"),  # no way out of the root
        lambda: raw.post("/api/repos/create", json={"name": "bad--name"}, headers={"Authorization": f"Bearer {tok}"}),
    ]
    hub.clear_requests()
    statuses = [call().status_code for call in calls]
    assert statuses == [401, 404, 404, 404, 404, 404, 405, 501, 400, 401, 404, 400]
    for record in hub.requests:
        assert record.status is not None and record.status >= 400
        assert record.error_code, record


def test_malformed_http_gets_a_coded_error_too(hub):
    import socket

    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as connection:
        connection.sendall(b"GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 70_000 + b"\r\n\r\n")
        answer = connection.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 431 ") and "X-Error-Code: ProtocolError" in answer


def test_bare_404_switch_breaks_file_exists_as_documented(hub, api, repo):
    assert api.file_exists(repo, "missing.txt") is False
    hub.settings.bare_404 = True
    with pytest.raises(HfHubHTTPError) as error:
        api.file_exists(repo, "missing.txt")  # without X-Error-Code the client cannot tell "no such file"
    assert "X-Error-Code" not in error.value.response.headers
    with pytest.raises(HfHubHTTPError) as info_error:
        api.model_info(hub.new_repo_id())
    assert not isinstance(info_error.value, RepositoryNotFoundError)
