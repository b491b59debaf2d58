"""Fuzzing the local hub: whatever arrives, the answer is well-formed HTTP with a status below 500, within a second,
the server's memory stays bounded, and nothing is written outside its root.

The server runs in its own process (so its memory is measured alone), with an empty working directory and temp
directory: anything written there, or beside the root, would be a write outside the root.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phi3_lora_hub.local_hub import root_credentials
from tests.hub.helpers import child_env
from tests.hub.wire import Answer, exchange, request_bytes

SERVER = """
import sys, threading
from phi3_lora_hub.local_hub import LocalHub
hub = LocalHub(sys.argv[1]).start()
print(hub.port, flush=True)
threading.Event().wait()
"""
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
REPO = "tester/fuzz"


class FuzzedHub:
    def __init__(self, base: Path) -> None:
        self.root = base / "hub"
        self.workdir, self.tmpdir = base / "cwd", base / "tmp"
        self.workdir.mkdir()
        self.tmpdir.mkdir()
        env = child_env(TMPDIR=str(self.tmpdir), TEMP=str(self.tmpdir), TMP=str(self.tmpdir))
        command = [sys.executable, "-c", SERVER, str(self.root)]
        self.log = base / "server.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=self.workdir
            )
        self.port = int(self.process.stdout.readline())
        self.token = root_credentials(self.root).write_token
        self.rss_at_start = 0

    def rss(self) -> int:
        """The server's resident memory in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def send(self, data: bytes) -> Answer:
        answer = exchange(self.port, data, timeout=5, half_close=True)
        assert answer.status, f"not an HTTP answer to {data[:300]!r}: {answer.raw_head!r}"
        assert answer.status < 500, (data[:300], answer.status, answer.body[:500])
        assert answer.seconds < 1, (data[:300], answer.seconds)
        if answer.headers.get("content-length") is not None and not data.startswith(b"HEAD "):
            assert len(answer.body) == int(answer.headers["content-length"])
        return answer

    def call(self, method: str, path: str, body: bytes, content_type: str = "application/json") -> Answer:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        return self.send(request_bytes(self.port, method, path, body, headers))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    if not Path("/proc/self/status").is_file():
        pytest.skip("server memory is read from /proc")
    server = FuzzedHub(tmp_path_factory.mktemp("fuzz"))
    try:
        assert server.call("POST", "/api/repos/create", b'{"name": "fuzz"}').status == 200
        server.rss_at_start = server.rss()
        yield server
        assert server.rss() - server.rss_at_start < 150 * 2**20, "the server's memory grew by more than 150 MB"
        assert not any(server.workdir.iterdir()) and not any(server.tmpdir.iterdir()), "written outside the root"
        assert sorted(path.name for path in server.root.parent.iterdir()) == ["cwd", "hub", "server.log", "tmp"]
        assert server.process.poll() is None, "the server died"
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]
    finally:
        server.process.kill()
        server.process.wait()


# --- the request parser --------------------------------------------------------------------------------------------

TOKENS = st.sampled_from(["", " ", ":", "\t", "%", "%2F", "..", "/", "?", "#", "\x00", "\x7f", "é", "\r", "\n"])
WORDS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
FRAGMENT = st.one_of(WORDS, TOKENS)
# Mostly well-formed request lines, so that the headers and bodies behind them are reached too.
METHOD_NAMES = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
METHODS = st.one_of(METHOD_NAMES, METHOD_NAMES, METHOD_NAMES, st.sampled_from(["OPTIONS", "BREW", "get"]), WORDS)
VERSIONS = st.one_of(
    st.just("HTTP/1.1"),
    st.just("HTTP/1.1"),
    st.just("HTTP/1.0"),
    st.sampled_from(["HTTP/2.0", "HTTP/0.9", "HTTP/1.1.1", "http/1.1", "HTTP/1.10"]),
    WORDS,
)
PATHS = st.one_of(
    st.sampled_from(
        [
            "/api/whoami-v2",
            "/api/validate-yaml",
            "/api/repos/create",
            f"/api/models/{REPO}",
            f"/api/models/{REPO}/preupload/main",
            f"/api/models/{REPO}/commit/main",
            f"/api/models/{REPO}/tree/main",
            f"/{REPO}/resolve/main/x",
            f"/{REPO}.git/info/lfs/objects/batch",
            f"/{REPO}",
            "/_local_hub/settings",
        ]
    ),
    st.lists(FRAGMENT, max_size=8).map(lambda parts: "/" + "/".join(parts)),
)
FRAMING_VALUES = st.sampled_from(
    ["0", "5", "300", "-1", "abc", "1, 2", "0x10", "999999999999", "chunked", "gzip, chunked", "chunked, gzip", ""]
)
HEADER_VALUES = st.one_of(
    FRAMING_VALUES, FRAMING_VALUES, st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
)
HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            ["Content-Length", "Transfer-Encoding", "Host", "Authorization", "Expect", "Connection", "X-A"]
        ),
        HEADER_VALUES,
    ),
    max_size=5,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"0\r\n\r\n", b"zz\r\nab\r\n0\r\n\r\n", b"5\r\nab\r\n", b"{}", b"[" * 5000 + b"]" * 5000]),
)


@given(
    method=METHODS,
    path=PATHS,
    version=VERSIONS,
    headers=HEADERS,
    body=BODIES,
    with_host=st.sampled_from([True, True, True, False]),
)
@FUZZ
def test_any_request_line_headers_and_body_get_a_well_formed_4xx_or_success(
    fuzzed, method, path, version, headers, body, with_host
):
    lines = [f"{method} {path} {version}"]
    if with_host:
        lines.append(f"Host: 127.0.0.1:{fuzzed.port}")
    lines += [f"{name}: {value}" for name, value in headers]
    head = "\r\n".join(lines).replace("\n\r\n", "\n").encode("latin-1", "replace")
    fuzzed.send(head + b"\r\n\r\n" + body)


# --- JSON, NDJSON and YAML bodies ----------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        ["", "..", "../..", "a/b", "tester", "fuzz", "main", "README.md", ".gitignore", "x" * 200, "model", "space"]
    ),
)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
)
NAMES = st.sampled_from(["a/b", "../..", "..", "x", "Fuzz", "", "a" * 200, REPO, "tester/other", "model", "main"])
ITEMS = st.dictionaries(
    st.sampled_from(["path", "sample", "size", "oid"]),
    st.one_of(NAMES, st.integers(-1, 2**40), st.just("a" * 64), JSON_VALUES),
    max_size=4,
)
VALUES = st.one_of(NAMES, NAMES, st.lists(ITEMS, max_size=3), JSON_VALUES)
# Each endpoint with the fields it reads, so that most bodies get past the first check.
JSON_ENDPOINTS = {
    ("POST", "/api/validate-yaml"): ["content", "repoType"],
    ("POST", "/api/repos/create"): ["name", "organization", "type", "private", "visibility", "sdk"],
    ("DELETE", "/api/repos/delete"): ["name", "organization", "type"],
    ("POST", "/api/repos/move"): ["fromRepo", "toRepo", "type"],
    ("POST", f"/api/models/{REPO}/preupload/main"): ["files", "gitIgnore"],
    ("POST", f"/api/models/{REPO}/branch/fuzz-branch"): ["startingPoint"],
    ("PUT", f"/api/models/{REPO}/settings"): ["private", "visibility", "gated"],
    ("POST", f"/api/models/{REPO}/tag/main"): ["tag"],
    ("POST", f"/{REPO}.git/info/lfs/objects/batch"): ["operation", "objects", "transfers", "ref"],
}
REQUESTS = st.sampled_from(sorted(JSON_ENDPOINTS.items())).flatmap(
    lambda item: st.tuples(
        st.just(item[0]),
        st.one_of(st.dictionaries(st.sampled_from(item[1]), VALUES, max_size=len(item[1])), JSON_VALUES),
    )
)


@given(request=REQUESTS)
@FUZZ
def test_any_json_body_gets_a_well_formed_answer_below_500(fuzzed, request):
    (method, path), body = request
    if isinstance(body, dict) and REPO in (body.get("fromRepo"), f"tester/{body.get('name')}"):
        return  # keep the repo the other examples use
    fuzzed.call(method, path, json.dumps(body).encode())


OPERATION = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["file", "lfsFile", "deletedFile", "deletedFolder", "header", "other"]),
        "value": st.one_of(
            st.fixed_dictionaries(
                {
                    "path": st.one_of(st.sampled_from(["a.txt", "README.md", ".gitattributes", "d/e.txt"]), st.text()),
                    "content": st.binary(max_size=100).map(lambda data: base64.b64encode(data).decode()),
                    "encoding": st.sampled_from(["base64", "utf-8", "hex"]),
                }
            ),
            st.dictionaries(st.sampled_from(["path", "oid", "size", "algo", "content"]), VALUES, max_size=4),
        ),
    }
)
HEADER_LINE = st.fixed_dictionaries(
    {
        "key": st.just("header"),
        "value": st.fixed_dictionaries({"summary": st.text(max_size=20)}, optional={"parentCommit": SCALARS}),
    }
)


@given(header=st.one_of(HEADER_LINE, JSON_VALUES), operations=st.lists(st.one_of(OPERATION, JSON_VALUES), max_size=4))
@FUZZ
def test_any_ndjson_commit_gets_a_well_formed_answer_below_500(fuzzed, header, operations):
    payload = "\n".join(json.dumps(line) for line in [header, *operations]).encode()
    fuzzed.call("POST", f"/api/models/{REPO}/commit/main", payload, "application/x-ndjson")


YAML_PIECES = st.sampled_from(
    [
        "a: 1",
        "- x",
        "&a [1, 2]",
        "*a",
        "<<: *a",
        "{",
        "}",
        "[",
        "]",
        "? ",
        ": ",
        "!!python/object:os.system",
        "'",
        '"',
        "|",
        ">",
        "---",
        "...",
        "%YAML 1.1",
        "tags: [phi3]",
        "license: mit",
        "  ",
        "\t",
        "#",
        "&b",
        "*b",
        "*c",
    ]
)


@given(pieces=st.lists(st.one_of(YAML_PIECES, st.text(max_size=10)), max_size=25), newline=st.sampled_from(["\n", " "]))
@FUZZ
def test_any_card_metadata_gets_a_well_formed_answer_below_500(fuzzed, pieces, newline):
    card = "---\n" + newline.join(pieces) + "\n---\nbody\n"
    fuzzed.call("POST", "/api/validate-yaml", json.dumps({"content": card, "repoType": "model"}).encode())
    fuzzed.call("POST", "/api/validate-yaml", json.dumps({"content": card, "repoType": "space"}).encode())
