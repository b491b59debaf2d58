"""Hostile input: every answer is a clean 4xx in bounded time and memory, and the hub has no well-known secrets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from phi3_lora_hub.local_hub import LocalHub, root_credentials
from tests.hub.helpers import child_env
from tests.hub.wire import exchange, request_bytes

JSON_ENDPOINTS = [
    ("POST", "/api/validate-yaml"),
    ("POST", "/api/repos/create"),
    ("DELETE", "/api/repos/delete"),
    ("POST", "/api/repos/move"),
    ("POST", "/api/models/{repo}/preupload/main"),
    ("POST", "/api/models/{repo}/commit/main"),
    ("POST", "/api/models/{repo}/branch/b1"),
    ("PUT", "/api/models/{repo}/settings"),
    ("POST", "/{repo}.git/info/lfs/objects/batch"),
    ("POST", "/_local_hub/faults"),
]


def auth(hub: LocalHub, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.write_token}", **extra}


def admin_or_write(hub: LocalHub, path: str) -> dict[str, str]:
    token = hub.admin_token if path.startswith("/_local_hub/") else hub.write_token
    return {"Authorization": f"Bearer {token}"}


# --- 3: request body limits -----------------------------------------------------------------------------------


def test_a_json_body_over_the_limit_is_refused_with_413_before_it_is_read(hub):
    # 64 MB announced, a few bytes sent: the answer comes at once, so the server did not wait for (or keep) it.
    head = request_bytes(hub.port, "POST", "/api/validate-yaml", headers={"Content-Length": str(64 << 20)})
    answer = exchange(hub.port, head + b'{"content": "')
    assert (answer.status, answer.headers["x-error-code"]) == (413, "PayloadTooLarge")
    assert answer.seconds < 1 and answer.headers["connection"] == "close"
    assert str(hub.settings.max_json_bytes) in answer.json()["error"]


def test_a_chunked_body_is_cut_off_at_the_limit(hub):
    hub.settings.max_json_bytes = 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (100, b"a" * 100) for _ in range(20)) + b"0\r\n\r\n"
    head = request_bytes(hub.port, "POST", "/api/validate-yaml", headers={"Transfer-Encoding": "chunked"})
    head = head.replace(b"Content-Length: 0\r\n", b"")
    answer = exchange(hub.port, head + chunks)
    assert answer.status == 413


@pytest.mark.parametrize(("method", "path"), [endpoint for endpoint in JSON_ENDPOINTS if "/commit/" not in endpoint[1]])
def test_every_json_endpoint_has_the_json_limit(hub, repo, method, path):
    hub.settings.max_json_bytes = 100
    path = path.format(repo=repo)
    body = json.dumps({"content": "x" * 200}).encode()
    answer = exchange(hub.port, request_bytes(hub.port, method, path, body, admin_or_write(hub, path)))
    assert answer.status == 413, (path, answer.body)


def test_an_lfs_transfer_may_not_exceed_the_size_it_was_signed_for(hub, api, repo, raw):
    import hashlib

    hub.settings.regular_only = False
    data = b"\0" * 1000
    oid = hashlib.sha256(data).hexdigest()
    batch = raw.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]},
        headers=auth(hub),
    ).json()
    href = batch["objects"][0]["actions"]["upload"]["href"].removeprefix(hub.url)
    too_long = exchange(hub.port, request_bytes(hub.port, "PUT", href, data + b"extra"))
    assert too_long.status == 413
    assert exchange(hub.port, request_bytes(hub.port, "PUT", href, data)).status == 200


def test_a_commit_over_its_limit_is_413_and_a_commit_under_it_lands(hub, api, repo):
    from huggingface_hub import CommitOperationAdd

    hub.settings.max_commit_bytes = 4000
    api.create_commit(repo, [CommitOperationAdd("small.txt", b"s" * 1000)], commit_message="fits")
    with pytest.raises(Exception, match="413"):
        api.create_commit(repo, [CommitOperationAdd("big.txt", b"b" * 5000)], commit_message="too big")
    assert "big.txt" not in api.list_repo_files(repo)


# --- 4: 400, never 500, for bad names and deep JSON -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"name": "sl/ash"},
        {"name": "../../evil"},
        {"name": "x", "organization": "../.."},
        {"name": "x", "organization": "a/b"},
    ],
)
def test_repo_names_with_a_slash_or_dots_are_400(hub, body):
    path = "/api/repos/create"
    answer = exchange(hub.port, request_bytes(hub.port, "POST", path, json.dumps(body).encode(), auth(hub)))
    assert (answer.status, answer.headers["x-error-code"]) == (400, "BadRequest")
    assert "Invalid repo" in answer.json()["error"]


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
def test_json_nested_too_deeply_is_400_on_every_json_endpoint(hub, repo, method, path):
    path = path.format(repo=repo)
    deep = b"[" * 200_000 + b"]" * 200_000
    hub.settings.max_json_bytes = 1 << 20
    answer = exchange(hub.port, request_bytes(hub.port, method, path, deep, admin_or_write(hub, path)))
    assert (answer.status, answer.headers["x-error-code"]) == (400, "BadRequest"), (path, answer.body[:300])
    assert "nested too deeply" in answer.json()["error"]


# --- 5: malformed HTTP gets a 400 ------------------------------------------------------------------------------

POST = "POST /api/validate-yaml HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.mark.parametrize(
    "request_text",
    [
        f"{POST}Content-Length: abc\r\n\r\n",
        f"{POST}Content-Length: -1\r\n\r\n",
        f"{POST}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}",
        f"{POST}Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        f"{POST}Transfer-Encoding: chunked\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n",
        f"{POST}Transfer-Encoding: gzip\r\n\r\n",
        f"{POST}Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{{}}",
        "GET /api/whoami-v2\r\n\r\n",
        "GET /api/whoami-v2 HTTP/x\r\n\r\n",
        "GET /api/whoami-v2 HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
        "BREW /api/whoami-v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "garbage\r\n\r\n",
    ],
)
def test_malformed_http_gets_a_400_answer_and_no_traceback(hub, capfd, request_text):
    answer = exchange(hub.port, request_text.encode())
    assert 400 <= answer.status < 500, answer.raw_head
    assert answer.headers["x-error-code"] and answer.headers["connection"] == "close"
    assert "Traceback" not in capfd.readouterr().err


# --- 6: no well-known secrets, loopback Host only --------------------------------------------------------------


def test_each_root_gets_its_own_random_tokens_kept_private_in_the_root(tmp_path, hub_online):
    first, second = root_credentials(tmp_path / "one"), root_credentials(tmp_path / "two")
    assert len({first.write_token, first.read_token, first.admin_token, second.write_token}) == 4
    path = tmp_path / "one" / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with LocalHub(tmp_path / "one") as hub:  # the root's tokens, unchanged by serving it
        assert (hub.write_token, hub.read_token, hub.admin_token) == (
            first.write_token,
            first.read_token,
            first.admin_token,
        )
        for token, status in [
            (first.write_token, 200),
            ("hf_local_write_token_0000000000000000", 401),
            ("hf_local_read_token_00000000000000000", 401),
        ]:
            whoami = request_bytes(hub.port, "GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
            assert exchange(hub.port, whoami).status == status
        control = request_bytes(
            hub.port,
            "GET",
            "/_local_hub/settings",
            headers={"Authorization": "Bearer hf_local_admin_token_0000000000000000"},
        )
        assert exchange(hub.port, control).status == 401


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("[::1]:{port}", 200),
        ("LOCALHOST", 200),
        ("evil.example", 400),
        ("evil.example:{port}", 400),
        ("127.0.0.1.evil.example", 400),
        ("localhost:{port}@evil", 400),
        ("", 400),
    ],
)
def test_only_loopback_host_names_are_answered(hub, host, status):
    data = request_bytes(hub.port, "GET", "/api/whoami-v2", headers={**auth(hub), "Host": host.format(port=hub.port)})
    answer = exchange(hub.port, data)
    assert answer.status == status
    if status == 400:
        assert answer.headers["x-error-code"] == "HostNotAllowed"


def test_urls_in_answers_use_the_host_the_client_named(hub, repo):
    data = request_bytes(
        hub.port, "POST", "/api/repos/create", b'{"name": "hosted"}', {**auth(hub), "Host": f"localhost:{hub.port}"}
    )
    assert exchange(hub.port, data).json()["url"] == f"http://localhost:{hub.port}/tester/hosted"


def test_the_operator_can_allow_more_host_names(tmp_path, hub_online):
    with LocalHub(tmp_path / "hub", allowed_hosts=["hub.internal"]) as hub:
        for host, status in [("hub.internal", 200), ("HUB.internal:8080", 200), ("other.internal", 400)]:
            data = request_bytes(hub.port, "GET", "/api/whoami-v2", headers={**auth(hub), "Host": host})
            assert exchange(hub.port, data).status == status


def test_serve_shows_the_new_root_tokens_once_and_hub_token_prints_them(tmp_path, hub_online):
    root = tmp_path / "hub"

    def serve_banner() -> str:
        command = [sys.executable, "-m", "phi3_lora_hub", "hub", "serve", "--root", str(root)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env())
        lines = []
        try:
            while not (line := server.stdout.readline()).startswith("Press Ctrl+C"):
                assert line, "the server stopped"
                lines.append(line)
        finally:
            server.terminate()
            assert server.wait(timeout=20) == 0
        return "".join(lines)

    first, second = serve_banner(), serve_banner()
    credentials = root_credentials(root)
    assert f"export HF_TOKEN={credentials.write_token}" in first and credentials.read_token in first
    assert credentials.admin_token in first
    for secret in (credentials.write_token, credentials.read_token, credentials.admin_token):
        assert secret not in second
    assert "export HF_TOKEN=$(phi3-lora-hub hub token --root" in second
    for role, token in [("write", credentials.write_token), ("admin", credentials.admin_token)]:
        printed = subprocess.run(
            [sys.executable, "-m", "phi3_lora_hub", "hub", "token", "--root", str(root), "--role", role],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert printed.stdout.strip() == token, printed.stderr


# --- 7: move, letter case, uploads across a restart -----------------------------------------------------------


def test_move_repo_renames_a_repo_with_its_history(hub, api, repo):
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import RepositoryNotFoundError

    api.create_commit(repo, [CommitOperationAdd("a.txt", b"a")], commit_message="a")
    api.create_branch(repo, branch="step-1")
    sha = api.model_info(repo).sha
    moved = hub.new_repo_id("moved")
    api.move_repo(repo, moved)
    assert api.model_info(moved).sha == sha and api.model_info(moved).id == moved
    assert {b.name for b in api.list_repo_refs(moved).branches} == {"main", "step-1"}
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo)
    api.create_repo(repo)  # the old name is free again
    with pytest.raises(Exception, match="409"):
        api.move_repo(moved, repo)
    with pytest.raises(Exception, match="403"):
        api.move_repo(moved, "someone-else/stolen")


def test_repo_ids_are_unique_regardless_of_letter_case(hub, api, hub_repo_id):
    from huggingface_hub import CommitOperationAdd

    api.create_repo(hub_repo_id)
    shouting = hub_repo_id.split("/")[0] + "/" + hub_repo_id.split("/")[1].upper()
    with pytest.raises(Exception, match="409"):
        api.create_repo(shouting)
    assert api.create_repo(shouting, exist_ok=True).repo_id == hub_repo_id
    api.create_commit(shouting, [CommitOperationAdd("x.txt", b"x")], commit_message="through the other case")
    assert api.model_info(shouting).id == hub_repo_id
    assert "x.txt" in api.list_repo_files(hub_repo_id)
    api.move_repo(hub_repo_id, shouting)  # a change of case only is a rename
    assert api.model_info(hub_repo_id).id == shouting


@pytest.mark.parametrize("chunk_size", [None, 400])
def test_an_lfs_upload_in_progress_continues_after_a_restart(tmp_path, hub_online, chunk_size):
    import hashlib

    import httpx2

    data = bytes(range(256)) * 4
    oid = hashlib.sha256(data).hexdigest()
    with LocalHub(tmp_path / "hub") as first:
        port = first.port
        first.settings.regular_only = False
        first.settings.lfs_multipart_chunk_size = chunk_size
        with httpx2.Client(base_url=first.url, trust_env=False, headers=auth(first)) as client:
            client.post("/api/repos/create", json={"name": "big"}).raise_for_status()
            batch = client.post(
                "/tester/big.git/info/lfs/objects/batch",
                json={
                    "operation": "upload",
                    "transfers": ["basic", "multipart"],
                    "objects": [{"oid": oid, "size": 1024}],
                },
            ).json()
        upload = batch["objects"][0]["actions"]["upload"]
        if chunk_size:
            first_part = httpx2.put(upload["header"]["1"], content=data[:400], trust_env=False)
            assert first_part.status_code == 200
    with LocalHub(tmp_path / "hub", port=port):  # a new server process would read the same root
        if chunk_size:
            etags = [first_part.headers["ETag"]]
            for number, piece in [(2, data[400:800]), (3, data[800:])]:
                part = httpx2.put(upload["header"][str(number)], content=piece, trust_env=False)
                assert part.status_code == 200, part.text
                etags.append(part.headers["ETag"])
            parts = [{"partNumber": number, "etag": etag} for number, etag in enumerate(etags, start=1)]
            done = httpx2.post(upload["href"], json={"oid": oid, "parts": parts}, trust_env=False)
        else:
            done = httpx2.put(upload["href"], content=data, trust_env=False)
        assert done.status_code == 200, done.text


def test_paths_info_work_is_bounded(hub, repo):
    from urllib.parse import urlencode

    path = f"/api/models/{repo}/paths-info/main"
    form = {"Content-Type": "application/x-www-form-urlencoded", **auth(hub)}
    many = urlencode({"paths": [f"d{i}/f" for i in range(5000)]}, doseq=True).encode()
    answer = exchange(hub.port, request_bytes(hub.port, "POST", path, many, form))
    assert answer.status == 400 and answer.seconds < 1
    allowed = urlencode({"paths": [f"d{i}/f" for i in range(1000)] + [".gitattributes"]}, doseq=True).encode()
    answer = exchange(hub.port, request_bytes(hub.port, "POST", path, allowed, form))
    assert answer.status == 400  # 1001 paths
    allowed = urlencode({"paths": [f"d{i}/f" for i in range(999)] + [".gitattributes"]}, doseq=True).encode()
    answer = exchange(hub.port, request_bytes(hub.port, "POST", path, allowed, form))
    assert (
        answer.status == 200 and answer.seconds < 1 and [item["path"] for item in answer.json()] == [".gitattributes"]
    )


# --- 1: YAML alias bombs in card metadata -----------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    """A README.md whose few hundred bytes of YAML expand to 10**levels scalars through nested aliases."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    return "---\n" + "\n".join(lines) + "\n---\n# bomb\n"


@pytest.mark.parametrize(
    "card",
    [alias_bomb(8), "---\nself: &s [*s]\n---\n", "---\nx: " + "[" * 5000 + "]" * 5000 + "\n---\n"],
    ids=["alias-bomb", "recursive-alias", "deep"],
)
def test_card_metadata_that_blows_up_is_refused_at_validation_and_commit(hub, api, repo, card):

    answer = exchange(
        hub.port,
        request_bytes(hub.port, "POST", "/api/validate-yaml", json.dumps({"content": card}).encode()),
    )
    assert answer.status == 400 and answer.seconds < 1
    assert "Refused card metadata" in answer.json()["errors"][0]["message"]
    commit = json.dumps({"key": "header", "value": {"summary": "bomb"}}) + "\n"
    commit += json.dumps({"key": "file", "value": {"path": "README.md", "content": card, "encoding": "utf-8"}})
    path = f"/api/models/{repo}/commit/main"
    answer = exchange(hub.port, request_bytes(hub.port, "POST", path, commit.encode(), auth(hub)))
    assert (answer.status, answer.headers["x-error-code"]) == (400, "InvalidMetadata")
    assert "README.md" not in api.list_repo_files(repo)


def test_a_bomb_already_stored_is_never_expanded_on_read(tmp_path, hub_online):
    from huggingface_hub import CommitOperationAdd, HfApi

    from phi3_lora_hub.local_hub.blobs import BlobStore
    from phi3_lora_hub.local_hub.objects import FileEntry
    from phi3_lora_hub.local_hub.repos import AddFile, RepoStore

    root = tmp_path / "hub"
    hub = LocalHub(root)
    with hub:
        api = HfApi(endpoint=hub.url, token=hub.write_token)
        api.create_repo("tester/old")
    card = alias_bomb(8).encode()  # stored as if committed before such cards were refused
    blobs = BlobStore(root)
    entry = FileEntry.regular(blobs.put_bytes(card), card)
    old = RepoStore(root, blobs).open("model", "tester/old")
    old.create_commit("main", [AddFile("README.md", entry)], title="old", message="", author="tester")
    with hub:
        answer = exchange(hub.port, request_bytes(hub.port, "GET", "/api/models/tester/old"))
        assert answer.status == 200 and answer.seconds < 1 and len(answer.body) < 10_000
        assert "cardData" not in answer.json()
        fixed = b"---\nlicense: mit\n---\nfixed\n"
        api.create_commit("tester/old", [CommitOperationAdd("README.md", fixed)], commit_message="fix")
        assert api.model_info("tester/old").card_data["license"] == "mit"


def test_anchors_and_aliases_that_stay_small_are_accepted(api, repo):
    from huggingface_hub import CommitOperationAdd

    card = b"---\ntags: &shared [phi3, lora]\nextra_tags: *shared\n---\nok\n"
    api.create_commit(repo, [CommitOperationAdd("README.md", card)], commit_message="aliases")
    assert api.model_info(repo).card_data["extra_tags"] == ["phi3", "lora"]


# --- 2: pattern matching is linear --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gitignore", "path"),
    [
        ("**/" * 10 + "x", "/".join(["d"] * 22) + "/y"),  # backtracking over segments
        ("*a" * 12 + "b", "a" * 900),  # backtracking inside one segment
        ("**/a/" * 8 + "**/b", "/".join(["a"] * 400) + "/c"),
    ],
    ids=["segments", "characters", "mixed"],
)
def test_pathological_gitignore_patterns_are_matched_in_linear_time(hub, repo, gitignore, path):
    body = {"files": [{"path": path, "sample": "", "size": 1}] * 256, "gitIgnore": "\n".join([gitignore] * 100)}
    preupload = f"/api/models/{repo}/preupload/main"
    answer = exchange(hub.port, request_bytes(hub.port, "POST", preupload, json.dumps(body).encode(), auth(hub)))
    assert answer.status == 200 and answer.seconds < 1
    assert answer.json()["files"][0]["shouldIgnore"] is False


def test_pattern_files_too_large_to_apply_are_400(hub, api, repo):
    from huggingface_hub import CommitOperationAdd

    many = "\n".join(f"dir{i}/*.bin" for i in range(1001))
    body = {"files": [{"path": "a.txt", "sample": "", "size": 1}], "gitIgnore": many}
    preupload = f"/api/models/{repo}/preupload/main"
    answer = exchange(hub.port, request_bytes(hub.port, "POST", preupload, json.dumps(body).encode(), auth(hub)))
    assert answer.status == 400 and "at most 1000 patterns" in answer.json()["error"]
    with pytest.raises(Exception, match="(?s)Bad request for commit.*at most 1000 patterns"):
        api.create_commit(repo, [CommitOperationAdd(".gitattributes", many.encode())], commit_message="huge")


@pytest.mark.parametrize("sample", [7, ["QUJD"], {"a": 1}], ids=["number", "list", "object"])
def test_a_preupload_sample_that_is_not_a_string_is_400_not_500(hub, repo, sample):
    body = {"files": [{"path": "a.txt", "sample": sample, "size": 3}]}
    preupload = f"/api/models/{repo}/preupload/main"
    answer = exchange(hub.port, request_bytes(hub.port, "POST", preupload, json.dumps(body).encode(), auth(hub)))
    assert answer.status == 400 and "base64 string" in answer.json()["error"]


# --- 8: web pages at the repository addresses -------------------------------------------------------------------


def test_the_repository_url_and_its_tree_blob_and_commit_pages_are_served(hub, api, repo, raw):
    from huggingface_hub import CommitOperationAdd

    card = b"---\nlicense: mit\n---\n# Card <script>alert(1)</script>\n"
    operations = [CommitOperationAdd("README.md", card), CommitOperationAdd("sub/dir/a.txt", b"hello")]
    info = api.create_commit(repo, operations, commit_message="pages")
    api.create_branch(repo, branch="ckpt/step-1")
    url = f"{hub.url}/{repo}"
    for address, expected in [
        (url, ["README.md", "sub/", "&lt;script&gt;", "ckpt/step-1"]),
        (f"{url}/tree/main", ["sub/", "README.md"]),
        (f"{url}/tree/main/sub", ["dir/"]),
        (f"{url}/tree/ckpt%2Fstep-1/sub/dir", ["a.txt"]),
        (f"{url}/blob/main/sub/dir/a.txt", ["hello", f"/{repo}/resolve/main/sub/dir/a.txt"]),
        (info.commit_url, ["pages", info.oid]),
    ]:
        page = raw.get(address.removeprefix(hub.url))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), address
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script
        for text in expected:
            assert text in page.text, (address, text)
        assert "<script>" not in page.text
    for missing in (f"/{repo}/tree/main/nope", f"/{repo}/blob/main/nope.txt", "/tester/no-such-repo"):
        answer = raw.get(missing)
        assert answer.status_code == 404 and answer.headers["X-Error-Code"], missing


def test_the_url_create_repo_returns_is_a_page_for_every_repo_type(hub, api):
    for repo_type, extra in [("model", {}), ("dataset", {}), ("space", {"space_sdk": "gradio"})]:
        url = api.create_repo(hub.new_repo_id(repo_type), repo_type=repo_type, **extra).url
        assert exchange(hub.port, request_bytes(hub.port, "GET", url.removeprefix(hub.url))).status == 200, url


def test_a_connection_that_stalls_is_closed(hub):
    import socket
    import time

    hub.settings.connection_timeout_s = 1
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as connection:
        connection.sendall(b"GET /api/whoami-v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then nothing
        started = time.monotonic()
        assert connection.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 5
