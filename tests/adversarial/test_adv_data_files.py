"""Fuzzing the file readers: random bytes, truncated JSON, wrong encodings give rows or the project's ``DataError``
naming the file and line; well-formed files of every supported type read back exactly the rows written."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from adv_data_strategies import any_row, hostile_text, near_miss_text
from hypothesis import given, settings
from hypothesis import strategies as st

from phi3_lora_hub.data.prepare import DataOptions, convert_rows
from phi3_lora_hub.data.sources import LOCAL_SUFFIXES, read_rows
from phi3_lora_hub.errors import DataError

pytestmark = pytest.mark.timeout(120)
PROFILE = settings.get_profile("adv_data")


def read_file(directory: Path, suffix: str, content: bytes) -> list[dict[str, Any]] | None:
    """Write ``content`` to a file and read it; ``None`` when the reader (or conversion) gave a ``DataError`` that
    names the file, else the rows (which conversion takes or refuses with a ``DataError``)."""
    path = directory / f"chats{suffix}"
    path.write_bytes(content)
    try:
        rows = read_rows(str(path)).rows
    except DataError as error:
        assert str(path) in str(error)
        return None
    assert all(isinstance(row, dict) for row in rows)
    with contextlib.suppress(DataError):
        convert_rows(read_rows(str(path)), DataOptions(on_bad_rows="skip"))
    return rows


def jsonl(rows: list[dict[str, Any]], *, ensure_ascii: bool) -> str:
    return "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows)


def no_nan(value: Any) -> bool:
    """NaN is never equal to itself, so rows holding one cannot be compared after a round trip."""
    if isinstance(value, float):
        return not math.isnan(value)
    if isinstance(value, list):
        return all(map(no_nan, value))
    if isinstance(value, dict):
        return all(map(no_nan, value.values()))
    return True


# Rows of text only: line separators (U+2028, NEL) and other hostile characters more often than in any_row.
text_rows = st.lists(st.fixed_dictionaries({"text": near_miss_text}), min_size=1, max_size=4)
rows_to_write = st.lists(any_row.filter(lambda row: all(isinstance(key, str) for key in row)), max_size=4)


@pytest.mark.parametrize("suffix", LOCAL_SUFFIXES)
@settings(PROFILE, max_examples=50)
@given(content=st.binary(max_size=300) | st.sampled_from([b"", b"\n\n", b"\xef\xbb\xbf", b"PAR1", b"\x00" * 64]))
def test_random_bytes_give_rows_or_a_data_error(tmp_path_factory, suffix: str, content: bytes) -> None:
    """Any bytes under any supported file name."""
    read_file(tmp_path_factory.mktemp("bytes"), suffix, content)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@settings(PROFILE, max_examples=50)
@given(rows=rows_to_write, data=st.data())
def test_truncated_json_gives_rows_or_a_data_error(tmp_path_factory, suffix: str, rows, data: st.DataObject) -> None:
    """A JSON or JSONL file cut at any byte (an interrupted download or copy)."""
    text = json.dumps(rows) if suffix == ".json" else jsonl(rows, ensure_ascii=False)
    content = text.encode("utf-8", "surrogatepass")
    cut = data.draw(st.integers(0, len(content)), label="cut")
    read_file(tmp_path_factory.mktemp("cut"), suffix, content[:cut])


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@settings(PROFILE, max_examples=50)
@given(rows=rows_to_write, codec=st.sampled_from(["utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252", "gb18030"]))
def test_wrong_encoding_gives_rows_or_a_data_error(tmp_path_factory, suffix: str, rows, codec: str) -> None:
    """A file saved in another encoding than UTF-8."""
    text = jsonl(rows, ensure_ascii=False)
    if suffix == ".json":
        text = json.dumps(rows, ensure_ascii=False)
    read_file(tmp_path_factory.mktemp("codec"), suffix, text.encode(codec, "replace"))


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "raw-utf8"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@settings(PROFILE, max_examples=50)
@given(rows=st.one_of(rows_to_write.filter(no_nan), text_rows), bom=st.booleans())
def test_json_files_read_back_the_rows_written(
    tmp_path_factory, suffix: str, ensure_ascii: bool, rows, bom: bool
) -> None:
    """JSON-like rows, with hostile text and surrogate escapes, written as JSON/JSONL (escaped or raw UTF-8, with or
    without a BOM), read back as JSON defines them (two escaped surrogates of a pair are one character)."""
    text = json.dumps(rows, ensure_ascii=ensure_ascii) if suffix == ".json" else jsonl(rows, ensure_ascii=ensure_ascii)
    if suffix == ".json" and not rows:
        return  # "[]" is an empty dataset, refused at conversion, not at reading
    content = ("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass")
    if not ensure_ascii and any("\ud800" <= char <= "\udfff" for char in text):
        assert read_file(tmp_path_factory.mktemp("json"), suffix, content) is None  # not UTF-8
    else:
        assert read_file(tmp_path_factory.mktemp("json"), suffix, content) == json.loads(json.dumps(rows))


text_columns = st.lists(st.sampled_from(["prompt", "response", "system", "extra"]), min_size=1, unique=True)
utf8_text = st.one_of(near_miss_text, hostile_text).filter(
    lambda text: not any("\ud800" <= c <= "\udfff" for c in text)
)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@settings(PROFILE, max_examples=40)
@given(columns=text_columns, data=st.data())
def test_table_files_read_back_the_rows_written(
    tmp_path_factory, suffix: str, columns: list[str], data: st.DataObject
) -> None:
    """Rows of text (NUL, line breaks, quotes, commas, RTL, emoji...) written as CSV or Parquet, read back exactly."""
    rows = data.draw(st.lists(st.fixed_dictionaries(dict.fromkeys(columns, utf8_text)), min_size=1, max_size=4))
    if suffix == ".csv":
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        content = buffer.getvalue().encode("utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows), sink)
        content = sink.getvalue().to_pybytes()
    assert read_file(tmp_path_factory.mktemp("table"), suffix, content) == rows
