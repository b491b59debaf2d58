"""The fast data path gives exactly what the reference path gives; truncation, dropping and caching are right."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phi3_testing import DATA_DIR, requires_assets

from phi3_lora_hub.data.prepare import DataOptions, convert_rows, prepare_dataset
from phi3_lora_hub.data.sources import read_rows
from phi3_lora_hub.data.tokenization import IGNORE_INDEX, tokenize_flat

ROLE_MAP = {"function_call": "assistant", "observation": "user"}
_TEXT = st.text(alphabet=st.sampled_from(list("ab c\n\t.,-é你😀 ")), min_size=0, max_size=30).map(str.strip)


def _assert_paths_agree(tokenizer, conversations):
    fast = tokenize_flat(tokenizer, conversations)
    reference = tokenize_flat(tokenizer, conversations, use_token_layout=False)
    assert np.array_equal(fast.offsets, reference.offsets)
    assert np.array_equal(fast.ids, reference.ids)
    assert np.array_equal(fast.labels, reference.labels)


@st.composite
def _conversations(draw):
    turns = draw(st.integers(1, 3))
    messages = [{"role": "system", "content": draw(_TEXT)}] if draw(st.booleans()) else []
    for _ in range(turns):
        messages.append({"role": "user", "content": draw(_TEXT)})
        messages.append({"role": "assistant", "content": draw(_TEXT.filter(bool))})
    return messages


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_conversations(), min_size=1, max_size=6))
def test_token_layout_labels_equal_offset_labels(tiny_tokenizer, conversations):
    _assert_paths_agree(tiny_tokenizer, conversations)


def test_rows_with_stray_markers_fall_back_to_offsets(tiny_tokenizer):
    """A row whose text holds a turn marker (not validated here) is labelled by the reference path."""
    conversations = [
        [{"role": "user", "content": "hi <|assistant|> there"}, {"role": "assistant", "content": "ok <|end|> x"}],
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "fine"}],
    ]
    _assert_paths_agree(tiny_tokenizer, conversations)


@requires_assets
@pytest.mark.real_assets
def test_token_layout_labels_equal_offset_labels_on_all_real_data(real_tokenizer):
    for path in sorted(DATA_DIR.iterdir()):
        options = DataOptions(on_bad_rows="skip", role_map=ROLE_MAP, text_part_types=("text", "reasoning"))
        try:
            conversations = convert_rows(read_rows(path), options).conversations
        except Exception:  # a file with no usable rows under these options
            continue
        _assert_paths_agree(real_tokenizer, conversations)


def test_rows_are_truncated_keeping_the_start_and_empty_ones_dropped(tiny_tokenizer):
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}
    long_answer = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 80}]}
    long_prompt = {"messages": [{"role": "user", "content": "word " * 80}, {"role": "assistant", "content": "ok"}]}
    rows = [short, long_answer, long_prompt]
    full, _ = prepare_dataset(read_rows(rows), tiny_tokenizer, DataOptions(max_length=None), use_cache=False)
    dataset, report = prepare_dataset(read_rows(rows), tiny_tokenizer, DataOptions(max_length=24), use_cache=False)
    assert report.too_long_rows == 2 and report.dropped_after_truncation == 1 and report.rows_used == 2
    assert "1 of them dropped" in report.summary()
    assert dataset["input_ids"][0] == full["input_ids"][0]
    assert dataset["input_ids"][1] == full["input_ids"][1][:24] and dataset["labels"][1] == full["labels"][1][:24]
    assert dataset["length"] == [len(full["input_ids"][0]), 24]
    assert dataset["truncated"] == [False, True]
    assert report.tokens == sum(dataset["length"])
    assert report.trained_tokens == sum(label != IGNORE_INDEX for row in dataset["labels"] for label in row)


def test_a_cached_run_never_parses_the_file(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("PHI3_LORA_HUB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "chats.jsonl"
    path.write_text('{"prompt": "hi", "response": "hello"}\n' * 8)
    first, report = prepare_dataset(read_rows(path, lazy=True), tiny_tokenizer, DataOptions())
    assert not report.cached
    raw = read_rows(path, lazy=True)
    second, cached = prepare_dataset(raw, tiny_tokenizer, DataOptions())
    assert cached.cached and "not read yet" in repr(raw)
    assert first["input_ids"] == second["input_ids"] and first["labels"] == second["labels"]


def test_lazy_reading_reports_parse_errors_when_rows_are_used(tmp_path):
    from phi3_lora_hub.errors import DataError

    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{not json\n')
    raw = read_rows(path, lazy=True)
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        _ = raw.rows


def _prepared_both_ways(tokenizer, rows, options, monkeypatch):
    """The dataset and report prepared with the tokenizer overlapping conversion (in batches of 3 rows, so that
    several batches are in flight) and without any overlap, in one batch."""
    from phi3_lora_hub.data import prepare

    serial = prepare.tokenize_rows(tokenizer, convert_rows(read_rows(rows), options), options, overlap=False)
    monkeypatch.setattr(prepare, "_TOKENIZE_BATCH", 3)
    parallel, report = prepare.convert_and_tokenize(read_rows(rows), tokenizer, options)
    return serial, parallel, report


def _assert_same_dataset(first, second):
    assert first.column_names == second.column_names
    assert first.with_format("arrow")[:].equals(second.with_format("arrow")[:])


def test_overlapped_preparation_gives_the_same_dataset_as_serial_preparation(tiny_tokenizer, monkeypatch):
    chats = [
        [{"role": "user", "content": f"question {i} " * (i % 5 + 1)}, {"role": "assistant", "content": f"answer {i}"}]
        for i in range(17)
    ]
    rows = [{"messages": chat} for chat in chats]
    rows[6]["messages"] = [{"role": "user", "content": "no answer"}]  # skipped: the batches after it shift
    rows[9]["messages"][0]["content"] = "word " * 60  # truncated to nothing trained: dropped
    options = DataOptions(on_bad_rows="skip", max_length=40)
    serial, parallel, report = _prepared_both_ways(tiny_tokenizer, rows, options, monkeypatch)
    _assert_same_dataset(serial, parallel)
    assert report.skipped_rows == [6] and report.dropped_after_truncation == 1 and report.rows_used == len(parallel)


def test_overlapped_preparation_still_reports_every_bad_row_before_training(tiny_tokenizer, monkeypatch):
    from phi3_lora_hub.data import prepare
    from phi3_lora_hub.errors import DataError

    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"messages": [{"role": "user", "content": "hi"}]}
    monkeypatch.setattr(prepare, "_TOKENIZE_BATCH", 2)
    with pytest.raises(DataError, match="2 of 9 rows cannot be used") as error:
        prepare.convert_and_tokenize(read_rows([good, bad, *[good] * 5, bad, good]), tiny_tokenizer, DataOptions())
    assert "row 1" in str(error.value) and "row 7" in str(error.value)


@requires_assets
@pytest.mark.real_assets
def test_overlapped_preparation_of_real_data_is_byte_identical_to_serial(real_tokenizer, monkeypatch):
    options = DataOptions(on_bad_rows="skip", role_map=ROLE_MAP, max_length=512)
    for name in ("llamafactory_glaive_toolcall_en_demo.json", "llamafactory_lima.json"):
        rows = read_rows(DATA_DIR / name).rows
        serial, parallel, _ = _prepared_both_ways(real_tokenizer, rows[:200], options, monkeypatch)
        _assert_same_dataset(serial, parallel)
