"""Crash-safe writes: a reader never sees a torn file or a half-built folder."""

from __future__ import annotations

import pytest

from phi3_lora_hub.atomic_write import TMP_MARKER, atomic_write_text, atomic_writer, build_directory_once


def test_a_write_that_fails_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [path.name for path in tmp_path.iterdir()] == ["report.json"]


def test_the_first_complete_folder_is_kept_and_a_later_build_is_discarded(tmp_path):
    directory = tmp_path / "entry"
    assert build_directory_once(directory, lambda staging: atomic_write_text(staging / "data", "first"))
    assert not build_directory_once(directory, lambda staging: atomic_write_text(staging / "data", "second"))
    assert (directory / "data").read_text() == "first"
    assert not [path for path in tmp_path.iterdir() if TMP_MARKER in path.name]


def test_a_build_that_fails_leaves_nothing_behind(tmp_path):
    def build(staging):
        atomic_write_text(staging / "data", "partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        build_directory_once(tmp_path / "entry", build)
    assert list(tmp_path.iterdir()) == []
