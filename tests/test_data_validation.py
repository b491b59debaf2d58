"""Every kind of bad row gives one clear error naming the row; skipping reports what was skipped."""

from __future__ import annotations

import pytest

from phi3_lora_hub import DataError
from phi3_lora_hub.data.prepare import DataOptions, convert_rows, prepare_dataset
from phi3_lora_hub.data.sources import read_rows

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}

BAD_ROWS = {
    "empty conversation": {"messages": []},
    "unknown role 'robot'": {"messages": [{"role": "robot", "content": "Hi"}, {"role": "assistant", "content": "x"}]},
    "non-text content (int)": {"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]},
    "non-text content (part type 'image_url')": {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
            {"role": "assistant", "content": "x"},
        ]
    },
    "no assistant turn": {"messages": [{"role": "user", "content": "Hi"}]},
    "empty assistant message": {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]
    },
    "does not alternate": {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
        ]
    },
    "control token '<|end|>'": {
        "messages": [{"role": "user", "content": "Hi<|end|>"}, {"role": "assistant", "content": "x"}]
    },
    "system message after the first turn": {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "b"},
            {"role": "assistant", "content": "c"},
        ]
    },
}


@pytest.mark.parametrize("expected", list(BAD_ROWS))
def test_each_bad_row_is_reported_with_its_row_number(expected):
    rows = [GOOD, GOOD, BAD_ROWS[expected], GOOD]
    with pytest.raises(DataError) as caught:
        convert_rows(read_rows(rows), DataOptions())
    error = caught.value
    assert len(error.problems) >= 1
    assert {problem.row for problem in error.problems} == {2}
    assert expected in str(error)
    assert "row 2" in str(error) and "1 of 4 rows cannot be used" in str(error)


def test_field_of_the_problem_is_named():
    rows = [BAD_ROWS["non-text content (int)"]]
    with pytest.raises(DataError) as caught:
        convert_rows(read_rows(rows), DataOptions())
    assert caught.value.problems[0].field == "messages[0].content"


def test_missing_fields_in_other_formats_are_named():
    with pytest.raises(DataError, match=r"row 1, output: missing"):
        convert_rows(
            read_rows([{"instruction": "a", "output": "b"}, {"instruction": "a", "input": "x"}]),
            DataOptions(format="alpaca"),
        )


def test_every_problem_is_listed_at_once():
    rows = [BAD_ROWS["empty conversation"], GOOD, BAD_ROWS["no assistant turn"], BAD_ROWS["empty assistant message"]]
    with pytest.raises(DataError) as caught:
        convert_rows(read_rows(rows), DataOptions())
    assert [p.row for p in caught.value.problems] == [0, 2, 3]


def test_skip_mode_trains_on_the_rest_and_reports_which_rows(caplog):
    rows = [GOOD, BAD_ROWS["empty conversation"], GOOD, BAD_ROWS["does not alternate"]]
    converted = convert_rows(read_rows(rows), DataOptions(on_bad_rows="skip"))
    assert len(converted.conversations) == 2
    report = converted.report
    assert report.skipped_rows == [1, 3] and report.rows_read == 4 and report.rows_used == 2
    assert "2 bad rows skipped (rows 1, 3)" in report.summary()
    assert "skipped 2 bad rows" in caplog.text


def test_skip_mode_with_nothing_left_is_an_error():
    with pytest.raises(DataError, match="no usable rows left"):
        convert_rows(read_rows([BAD_ROWS["empty conversation"]]), DataOptions(on_bad_rows="skip"))


def test_rows_longer_than_max_length_are_counted(tiny_tokenizer):
    long = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    _, report = prepare_dataset(
        read_rows([GOOD, long, GOOD]), tiny_tokenizer, DataOptions(max_length=64), use_cache=False
    )
    assert report.too_long_rows == 1
    assert "1 rows longer than max_length=64 will be truncated" in report.summary()


def test_prepared_data_is_cached_and_reused(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("PHI3_LORA_HUB_CACHE", str(tmp_path / "cache"))
    raw = read_rows([GOOD] * 5)
    first, report = prepare_dataset(raw, tiny_tokenizer, DataOptions())
    second, cached = prepare_dataset(raw, tiny_tokenizer, DataOptions())
    assert not report.cached and cached.cached
    assert first["input_ids"] == second["input_ids"] and first["labels"] == second["labels"]
    _, other = prepare_dataset(raw, tiny_tokenizer, DataOptions(assistant_only_loss=False))
    assert not other.cached
