"""Server internals that the client cannot see directly: concurrency, path patterns, settings, ids."""

from __future__ import annotations

import threading

import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import HfHubHTTPError
from hypothesis import given, settings
from hypothesis import strategies as st

from phi3_lora_hub.local_hub import HubSettings
from phi3_lora_hub.local_hub.patterns import DEFAULT_GITATTRIBUTES, choose_upload_mode, is_ignored, is_lfs_tracked


def _run_concurrently(count: int, work) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_concurrent_commits_are_serialised_and_none_is_lost(api, repo):
    outcomes = _run_concurrently(
        6, lambda i: api.create_commit(repo, [CommitOperationAdd(f"f{i}.txt", b"x")], commit_message=f"c{i}")
    )
    assert outcomes == [None] * 6
    commits = api.list_repo_commits(repo)
    assert sorted(c.title for c in commits[:-1]) == [f"c{i}" for i in range(6)]
    assert api.list_repo_files(repo) == [".gitattributes", *(f"f{i}.txt" for i in range(6))]


def test_concurrent_commits_on_the_same_parent_exactly_one_wins(api, repo):
    base = api.model_info(repo).sha
    outcomes = _run_concurrently(
        4,
        lambda i: api.create_commit(
            repo, [CommitOperationAdd("same.txt", str(i).encode())], commit_message=f"c{i}", parent_commit=base
        ),
    )
    winners = [outcome for outcome in outcomes if outcome is None]
    losers = [outcome for outcome in outcomes if outcome is not None]
    assert len(winners) == 1
    assert all(isinstance(e, HfHubHTTPError) and e.response.status_code == 412 for e in losers)
    assert len(api.list_repo_commits(repo)) == 2


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("debug.log", True),
        ("deep/dir/trace.log", True),
        ("keep.log", False),  # re-included by "!keep.log"
        ("cache/x.bin", True),  # "cache/" ignores the folder and everything below
        ("src/cache/y.txt", True),  # an unanchored pattern matches at any depth
        ("cachefile", False),
        ("build/out.txt", True),  # "/build" is anchored at the root
        ("src/build/out.txt", False),
        ("docs/a/b/c.md", True),  # "docs/**/*.md"
        ("docs/readme.txt", False),
    ],
)
def test_gitignore_matching(path, ignored):
    gitignore = "# comment\n*.log\n!keep.log\ncache/\n/build\ndocs/**/*.md\n"
    assert is_ignored(path, gitignore) is ignored


def test_gitattributes_decide_the_upload_mode():
    assert is_lfs_tracked("adapter_model.safetensors", DEFAULT_GITATTRIBUTES)
    assert is_lfs_tracked("ckpt/optimizer.pt", DEFAULT_GITATTRIBUTES)
    assert is_lfs_tracked("runs/events.out.tfevents.123", DEFAULT_GITATTRIBUTES)
    assert not is_lfs_tracked("adapter_config.json", DEFAULT_GITATTRIBUTES)
    assert not is_lfs_tracked("model.safetensors", DEFAULT_GITATTRIBUTES + "*.safetensors -filter\n")

    def mode(path: str, size: int = 10, sample: bytes = b"text", regular_only: bool = False) -> str:
        return choose_upload_mode(
            path, size, sample, gitattributes=DEFAULT_GITATTRIBUTES, regular_only=regular_only, lfs_threshold=100
        )

    assert mode("w.safetensors") == "lfs"
    assert mode("notes.txt") == "regular"
    assert mode("notes.txt", size=101) == "lfs"  # above the threshold
    assert mode("blob.dat", sample=b"\x00\x01") == "lfs"  # binary
    assert mode("w.safetensors", size=0) == "regular"  # empty files cannot be LFS
    assert mode("w.safetensors", regular_only=True) == "regular"


def test_settings_updates_are_checked():
    settings = HubSettings()
    settings.update({"tree_page_size": 5, "bare_404": True, "lfs_multipart_chunk_size": None})
    assert (settings.tree_page_size, settings.bare_404) == (5, True)
    for bad in ({"tree_page_size": 0}, {"bare_404": "yes"}, {"no_such": 1}, {"tree_page_size": 3, "regular_only": 1}):
        with pytest.raises(ValueError):
            settings.update(bad)
    assert settings.tree_page_size == 5 and settings.regular_only is True  # nothing applied from a bad update


def test_commit_ids_are_distinct_for_identical_trees(api, repo):
    first = api.create_commit(repo, [CommitOperationAdd("a.txt", b"same")], commit_message="same")
    api.delete_file("a.txt", repo)
    again = api.create_commit(repo, [CommitOperationAdd("a.txt", b"same")], commit_message="same")
    assert first.oid != again.oid
    assert all(len(c.commit_id) == 40 and c.commit_id == c.commit_id.lower() for c in api.list_repo_commits(repo))


def _reference_match(glob: str, path: str) -> bool:
    """gitignore glob semantics by plain recursion (exponential, for tiny inputs): ``*``/``?`` within a segment,
    ``**`` for any number of segments (one or more when it ends the glob)."""

    def segment(g: str, s: str) -> bool:
        if not g:
            return not s
        if g[0] == "*":
            return segment(g[1:], s) or (bool(s) and segment(g, s[1:]))
        return bool(s) and (g[0] == "?" or g[0] == s[0]) and segment(g[1:], s[1:])

    def segments(gs: list[str], ps: list[str]) -> bool:
        if not gs:
            return not ps
        if gs[0] == "**":
            if len(gs) == 1:
                return bool(ps)
            return segments(gs[1:], ps) or (bool(ps) and segments(gs, ps[1:]))
        return bool(ps) and segment(gs[0], ps[0]) and segments(gs[1:], ps[1:])

    return segments(glob.split("/"), path.split("/"))


@given(
    glob=st.lists(st.sampled_from(["**", "a", "b", "*", "a*", "*b", "?", "a?b", "*a*", "**"]), min_size=1, max_size=5),
    path=st.lists(st.sampled_from(["a", "b", "ab", "ba", "aab", "abab"]), min_size=1, max_size=6),
)
@settings(max_examples=400, deadline=None)
def test_linear_glob_matching_agrees_with_the_plain_definition(glob, path):
    from phi3_lora_hub.local_hub.patterns import PathPattern

    pattern = PathPattern.compile("/" + "/".join(glob))  # anchored: the whole glob against the whole path
    assert pattern.matches_file("/".join(path)) is _reference_match("/".join(glob), "/".join(path))
