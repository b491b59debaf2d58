"""Fuzzing format detection, conversion and validation: any rows either convert to trainable conversations or give
the project's ``DataError`` naming every bad row; never another exception, never a hang."""

from __future__ import annotations

from typing import Any

import pytest
from adv_data_strategies import (
    any_row,
    good_conversations,
    hostile_text,
    json_scalars,
    rows_by_format,
    written_as,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st

from phi3_lora_hub import phi3_format
from phi3_lora_hub.data.formats import FORMATS, detect_format
from phi3_lora_hub.data.prepare import DataOptions, convert_rows, prepare_dataset
from phi3_lora_hub.data.sources import read_rows
from phi3_lora_hub.data.validation import validate_messages
from phi3_lora_hub.errors import DataError

pytestmark = pytest.mark.timeout(120)
PROFILE = settings.get_profile("adv_data")
good_rows = good_conversations().map(lambda messages: {"messages": messages})


def check_outcome(rows: list[dict[Any, Any]], options: DataOptions) -> list[list[dict[str, str]]] | None:
    """Convert ``rows``; return the conversations, or ``None`` after checking the ``DataError`` names its rows."""
    try:
        converted = convert_rows(read_rows(rows), options)
    except DataError as error:
        message = str(error)
        message.encode("utf-8")  # printable by the CLI: no lone surrogate copied into the message
        if not error.problems:  # a dataset-level error: no rows, no recognisable format, nothing left
            assert "no rows" in message or "Cannot tell the chat format" in message or "no usable rows" in message
        for problem in error.problems:
            assert 0 <= problem.row < len(rows)
        for problem in error.problems[:20]:
            assert f"  - row {problem.row}, {problem.field}: " in message
        return None
    report = converted.report
    assert report.rows_used == len(converted.conversations) == len(rows) - len(report.skipped_rows)
    for conversation in converted.conversations:
        assert validate_messages(0, conversation) == []
        for message in conversation:
            assert message["content"] == message["content"].strip()
            message["content"].encode("utf-8")  # what is accepted, a tokenizer can encode (no lone surrogate)
    return converted.conversations


@settings(PROFILE, max_examples=300)
@given(rows=st.lists(any_row, max_size=4), on_bad_rows=st.sampled_from(["raise", "skip"]))
def test_any_rows_convert_or_raise_a_data_error_naming_the_rows(rows: list[dict[Any, Any]], on_bad_rows: str) -> None:
    """Arbitrary JSON-like rows, with the format detected from their columns."""
    check_outcome(rows, DataOptions(on_bad_rows=on_bad_rows))


@settings(PROFILE, max_examples=50)
@given(
    rows=st.one_of(
        st.lists(good_rows, min_size=1, max_size=3), st.lists(st.one_of(good_rows, any_row), min_size=1, max_size=4)
    ),
    max_length=st.sampled_from([None, 12, 2048, 1]),
)
def test_whole_pipeline_gives_a_dataset_or_a_data_error(tiny_tokenizer, rows: list[dict[Any, Any]], max_length) -> None:
    """``prepare_dataset`` as the recipe runs it (cache key, conversion, tokenization, truncation, cache write)."""
    options = DataOptions(on_bad_rows="skip", max_length=max_length)
    try:
        dataset, report = prepare_dataset(read_rows(rows), tiny_tokenizer, options)
    except DataError as error:
        assert error.problems or any(
            reason in str(error)
            for reason in ("no rows", "Cannot tell the chat format", "no usable rows", "no rows left")
        )
        event("refused")
        return
    event("prepared")
    assert len(dataset) == report.rows_used > 0
    assert max_length is None or max(dataset["length"]) <= max_length


@pytest.mark.parametrize("data_format", FORMATS)
@settings(PROFILE, max_examples=80)
@given(data=st.data())
def test_rows_of_a_format_convert_or_raise_a_data_error_naming_the_rows(data: st.DataObject, data_format: str) -> None:
    """Rows that carry a format's columns with anything inside, converted with that format forced; bad rows are
    skipped or reported, and with ``skip`` every row without a problem is kept."""
    rows = data.draw(st.lists(rows_by_format[data_format], min_size=1, max_size=4))
    strict = check_outcome(rows, DataOptions(format=data_format))
    lenient = check_outcome(rows, DataOptions(format=data_format, on_bad_rows="skip"))
    if strict is not None:
        assert lenient == strict


@pytest.mark.parametrize("data_format", FORMATS)
@settings(PROFILE, max_examples=60)
@given(data=st.data())
def test_good_conversations_convert_back_exactly(data: st.DataObject, data_format: str) -> None:
    """A trainable conversation with hostile but legal text (near-miss control tokens, RTL, zero-width, emoji,
    NUL), written in any format, converts back to exactly itself."""
    conversation = data.draw(good_conversations(max_pairs=1 if data_format == "prompt_response" else 3))
    rows = [written_as(data_format, conversation)]
    assert detect_format(rows[0]) == data_format
    assert check_outcome(rows, DataOptions()) == [conversation]


@settings(PROFILE, max_examples=150)
@given(
    conversation=good_conversations(),
    data=st.data(),
    token=st.sampled_from(phi3_format.CONTROL_TOKENS),
)
def test_control_token_anywhere_in_content_is_refused(
    conversation: list[dict[str, str]], data: st.DataObject, token: str
) -> None:
    """A control token hidden in any message (any role, any position in the text) refuses that row, naming the
    message and the token; the other rows still train with ``on_bad_rows="skip"``."""
    position = data.draw(st.integers(0, len(conversation) - 1), label="message")
    content = conversation[position]["content"]
    cut = data.draw(st.integers(0, len(content)), label="cut")
    poisoned = [dict(message) for message in conversation]
    poisoned[position]["content"] = f"{content[:cut]}{token}{content[cut:]}"
    rows = [{"messages": conversation}, {"messages": poisoned}]
    with pytest.raises(DataError) as caught:
        convert_rows(read_rows(rows), DataOptions())
    assert f"row 1, messages[{position}].content: contains the Phi-3 control token" in str(caught.value)
    assert {problem.row for problem in caught.value.problems} == {1}
    assert convert_rows(read_rows(rows), DataOptions(on_bad_rows="skip")).conversations == [conversation]


@settings(PROFILE, max_examples=200)
@given(
    columns=st.lists(
        st.one_of(
            st.sampled_from(["messages", "text", "prompt", "output"]),
            json_scalars,
        ),
        max_size=5,
    )
)
def test_format_detection_names_a_format_or_raises_a_data_error(columns: list[Any]) -> None:
    """Any set of column names, of any hashable type."""
    try:
        assert detect_format(columns) in FORMATS
    except DataError as error:
        assert "Cannot tell the chat format" in str(error)


@settings(PROFILE, max_examples=300)
@given(text=hostile_text)
def test_parse_returns_messages_or_raises_value_error(text: str) -> None:
    """``phi3_format.parse`` on any text (the ``phi3_text`` converter turns its ValueError into a row problem);
    what it accepts holds no control token and renders back to text it parses the same way."""
    try:
        messages = phi3_format.parse(text)
    except ValueError:
        return
    assert all(phi3_format.contains_control_token(message["content"]) is None for message in messages)
    assert phi3_format.parse(phi3_format.render(messages).text) == messages


@settings(PROFILE, max_examples=200)
@given(conversation=good_conversations())
def test_render_then_parse_gives_back_every_turn(conversation: list[dict[str, str]]) -> None:
    """A trainable conversation survives the Phi-3 text format: same turns, same roles, same text."""
    rendered = phi3_format.render(conversation)
    assert phi3_format.parse(rendered.text) == conversation
    answers = [message["content"] + phi3_format.END for message in conversation if message["role"] == "assistant"]
    assert [rendered.text[span.start : span.end] for span in rendered.assistant_spans] == answers


@settings(PROFILE, max_examples=300)
@given(text=hostile_text)
def test_contains_control_token_finds_every_literal_token(text: str) -> None:
    """The detector agrees with a plain substring search over the token list (and so misses no token)."""
    found = phi3_format.contains_control_token(text)
    present = [token for token in phi3_format.CONTROL_TOKENS if token in text]
    assert (found is None) == (not present)
    assert found is None or found in present


@pytest.mark.slow
@settings(PROFILE, max_examples=1500)
@given(rows=st.lists(any_row, max_size=8))
def test_bigger_run_of_any_rows(rows: list[dict[Any, Any]]) -> None:
    """The property of the first test over 1,500 datasets of up to 8 rows, skipping bad rows (slow CI step)."""
    check_outcome(rows, DataOptions(on_bad_rows="skip"))
