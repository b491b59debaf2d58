"""Regressions for the data-pipeline bugs the fuzzing found: each input gives the project's DataError naming the row
(or the file and line), or converts correctly, instead of another exception or a silent loss of data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from phi3_lora_hub.data.prepare import DataOptions, convert_rows, prepare_dataset, tokenize_rows
from phi3_lora_hub.data.sources import read_rows
from phi3_lora_hub.errors import DataError


def convert(rows: list[dict[Any, Any]]) -> list[list[dict[str, str]]]:
    return convert_rows(read_rows(rows), DataOptions()).conversations


def test_columns_that_are_not_strings_do_not_break_format_detection() -> None:
    """Keys of mixed types (an in-memory dict, a CSV row with extra fields) were sorted together: TypeError."""
    with pytest.raises(DataError, match=r"Cannot tell the chat format of a dataset with columns \['a', 1\]"):
        convert([{1: "x", "a": "y"}])


def test_unhashable_part_type_is_a_data_problem() -> None:
    """A content part whose ``type`` is a list was looked up in a set: TypeError."""
    row = {
        "messages": [
            {"role": "user", "content": [{"type": ["text"], "text": "x"}]},
            {"role": "assistant", "content": "y"},
        ]
    }
    with pytest.raises(
        DataError, match=r"row 0, messages\[0\]\.content\[0\]: non-text content \(part type \['text'\]\)"
    ):
        convert([row])


@pytest.mark.parametrize(
    "row",
    [
        {"prompt": "Hi", "response": "Hello", "system": 42},
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Hello"}],
            "system": {"a": 1},
        },
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}], "system": ["a", 1]},
        {"instruction": "Hi", "output": "Hello", "system": 4.5},
    ],
    ids=["prompt_response", "prompt_completion", "sharegpt", "alpaca"],
)
def test_non_text_system_is_reported_not_dropped(row: dict[str, Any]) -> None:
    """A ``system`` column that is not text was silently left out of the conversation."""
    with pytest.raises(DataError, match=r"row 0, system(\[1\])?: non-text content"):
        convert([row])


def test_system_given_as_text_parts_is_kept() -> None:
    """The ``system`` column takes the same content forms as messages (a string or a list of text parts)."""
    row = {"prompt": "Hi", "response": "Hello", "system": [{"type": "text", "text": " Be brief. "}]}
    assert convert([row])[0][0] == {"role": "system", "content": "Be brief."}


def test_lone_surrogate_is_a_data_problem(tmp_path, tiny_tokenizer) -> None:
    r"""A JSON ``\ud83d`` escape without its pair passed validation, then the tokenizer raised TypeError."""
    path = tmp_path / "chats.jsonl"
    path.write_text('{"prompt": "Hi", "response": "ok"}\n{"prompt": "smile \\ud83d", "response": "ok"}\n')
    with pytest.raises(
        DataError, match=r"row 1 \(line 2\), messages\[0\]\.content: not valid Unicode: lone surrogate '\\ud83d'"
    ):
        convert_rows(read_rows(str(path)), DataOptions())
    rows = convert_rows(read_rows(str(path)), DataOptions(on_bad_rows="skip"))
    assert rows.report.skipped_rows == [1]
    assert len(tokenize_rows(tiny_tokenizer, rows, DataOptions())) == 1


MALFORMED_FILES = {
    "not UTF-8": ("chats.jsonl", b'{"text": "ok"}\n\xff\xfe{"text": "x"}\n', r"line 2 is not UTF-8 text \(byte 0xff"),
    "UTF-16": ("chats.json", '[{"text": "x"}]'.encode("utf-16"), r"line 1 is not UTF-8 text"),
    "JSON nested too deeply": ("chats.json", b"[" * 100_000 + b"]" * 100_000, r"invalid JSON at line 1.*too deeply"),
    "JSONL nested too deeply": ("chats.jsonl", b'{"a": ' * 100_000, r"line 1 is not valid JSON: nested too deeply"),
    "CSV row with extra fields": (
        "chats.csv",
        b"prompt,response\nHi,Hello\nHi, there,Hello\n",
        r"line 3 has 3 fields, the header 2",
    ),
    "CSV not UTF-8": ("chats.csv", b"prompt,response\nHi,caf\xe9\n", r"line 2 is not UTF-8 text \(byte 0xe9"),
    "not Parquet": ("chats.parquet", b"PAR1 not really", r"not a readable Parquet file"),
}


@pytest.mark.parametrize("case", list(MALFORMED_FILES))
def test_malformed_file_gives_a_data_error_naming_the_line(tmp_path, case: str) -> None:
    """UnicodeDecodeError, RecursionError, csv's None key and ArrowInvalid escaped the readers."""
    name, content, message = MALFORMED_FILES[case]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        convert_rows(read_rows(str(tmp_path / name)), DataOptions())


@pytest.mark.parametrize("name", ["chats.jsonl", "chats.json", "chats.csv"])
def test_utf8_with_byte_order_mark_is_read(tmp_path, name: str) -> None:
    """A file saved as "UTF-8 with BOM" (Windows editors) was refused ("Unexpected UTF-8 BOM"), or its first CSV
    column was named ``\\ufeffprompt``."""
    text = "prompt,response\nHi,Hello\n" if name.endswith(".csv") else '{"prompt": "Hi", "response": "Hello"}\n'
    (tmp_path / name).write_bytes(text.encode("utf-8-sig"))
    assert convert(read_rows(str(tmp_path / name)).rows) == [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ]


def test_csv_field_longer_than_csv_default_limit_is_read(tmp_path) -> None:
    """A 200,000-character answer hit csv's 131,072-character field limit: ``_csv.Error``."""
    (tmp_path / "long.csv").write_text(f"prompt,response\nHi,{'a' * 200_000}\n")
    assert len(read_rows(str(tmp_path / "long.csv")).rows[0]["response"]) == 200_000


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_jsonl_string_holding_a_unicode_line_separator_is_read(tmp_path, separator: str) -> None:
    """JSONL written as raw UTF-8 (``ensure_ascii=False``) may hold U+2028, NEL, ... inside strings; the reader split
    lines with ``str.splitlines()``, which breaks there too: "line 1 is not valid JSON: Unterminated string"."""
    row = {"prompt": f"one{separator}two", "response": "ok"}
    (tmp_path / "chats.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\r\n" + json.dumps(row) + "\n")
    assert read_rows(str(tmp_path / "chats.jsonl")).rows == [row, row]


def test_alpaca_input_without_instruction_has_no_leading_blank_lines() -> None:
    """An empty ``instruction`` with an ``input`` gave the user message ``"\\n\\n<input>"``: content that is not
    stripped, whose newlines Phi-3's ``<|user|>`` token swallows, so the text trained on differed from the rendering."""
    conversation = convert([{"instruction": "", "input": "bonjour", "output": "hello"}])[0]
    assert conversation[0] == {"role": "user", "content": "bonjour"}


def test_prepare_dataset_of_rows_with_keys_of_mixed_types(tiny_tokenizer) -> None:
    """The cache key of in-memory rows was their JSON with sorted keys: ``{1: ..., "prompt": ...}`` raised TypeError
    before any row was looked at; now the rows are prepared (the extra column ignored) or refused as data."""
    rows = [{1: "extra", "prompt": "Hi", "response": "Hello"}]
    dataset, report = prepare_dataset(read_rows(rows), tiny_tokenizer, DataOptions())
    assert len(dataset) == report.rows_used == 1
    with pytest.raises(DataError, match="Cannot tell the chat format"):
        prepare_dataset(read_rows([{1: "x", "a": "y"}]), tiny_tokenizer, DataOptions())


def test_problem_in_a_file_names_the_line_when_it_is_not_row_plus_one(tmp_path) -> None:
    """Blank lines in JSONL and quoted line breaks in CSV shift rows off their lines: "row 1" of a file whose second
    row sits on line 4 pointed the user at the wrong line (DataProblem promised line - 1). "row 1" alone was read as
    the first line too: every row of a file now names its 1-based JSONL/CSV line, or its JSON array index; in-memory
    rows keep their 0-based row number alone."""
    good, bad = '{"prompt": "Hi", "response": "Hello"}', '{"prompt": "Hi", "response": 7}'
    (tmp_path / "gaps.jsonl").write_text(f"{good}\n\n\n{bad}\n")
    (tmp_path / "plain.jsonl").write_text(f"{good}\n{bad}\n")
    (tmp_path / "chats.csv").write_text('prompt,response\n"two\nlines",Hello\n\nHi\n')
    (tmp_path / "array.json").write_text(f"[\n  {good},\n  {good},\n  {bad}\n]\n")
    expected = {
        "gaps.jsonl": "row 1 (line 4), response: non-text content (int)",
        "plain.jsonl": "row 1 (line 2), response: non-text content (int)",
        "chats.csv": "row 1 (line 5), response: missing",
        "array.json": "row 2 (JSON array index 2), response: non-text content (int)",
    }
    for name, message in expected.items():
        with pytest.raises(DataError) as caught:
            convert_rows(read_rows(str(tmp_path / name), lazy=name == "gaps.jsonl"), DataOptions())
        assert message in str(caught.value)
    with pytest.raises(DataError, match=r"row 1, response: non-text content \(int\)"):
        convert_rows(read_rows([{"prompt": "Hi", "response": "Hello"}, {"prompt": "Hi", "response": 7}]), DataOptions())
