"""Format detection and conversion of every supported chat format to Phi-3 messages."""

from __future__ import annotations

import json

import datasets
import pytest

from phi3_lora_hub import ConfigError, DataError
from phi3_lora_hub.data.formats import RowConverter, detect_format
from phi3_lora_hub.data.prepare import DataOptions, convert_rows
from phi3_lora_hub.data.sources import read_rows

SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello!"}

EXAMPLES = {
    "messages": {"messages": [SYSTEM, USER, ASSISTANT]},
    "sharegpt": {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
        ]
    },
    "alpaca": {"instruction": "Hi", "input": "", "output": "Hello!", "system": "Be brief."},
    "prompt_response": {"prompt": "Hi", "response": "Hello!", "system": "Be brief."},
    "prompt_completion": {"prompt": "Hi", "completion": "Hello!", "system": "Be brief."},
    "phi3_text": {
        "text": "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|endoftext|>"
    },
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_each_format_is_detected_and_converted(name):
    row = EXAMPLES[name]
    assert detect_format(row.keys()) == name
    messages, problems = RowConverter(name)(0, row)
    assert problems == []
    assert messages == [SYSTEM, USER, ASSISTANT]


def test_openai_content_parts_are_flattened():
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": [{"type": "text", "value": "A"}, {"type": "text", "text": "B"}]},
        ]
    }
    messages, problems = RowConverter("messages")(0, row)
    assert problems == [] and messages[1]["content"] == "A\nB"


def test_alpaca_input_and_history_become_turns():
    row = {"instruction": "Translate", "input": "bonjour", "output": "hello", "history": [["Q1", "A1"], ["Q2", "A2"]]}
    messages, _ = RowConverter("alpaca")(0, row)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert messages[4]["content"] == "Translate\n\nbonjour"
    assert messages[-1]["content"] == "hello"


def test_trl_conversational_prompt_completion():
    row = {"prompt": [SYSTEM, USER], "completion": [ASSISTANT]}
    assert RowConverter("prompt_completion")(0, row) == ([SYSTEM, USER, ASSISTANT], [])


def test_role_map_and_text_part_types_open_up_tool_data():
    row = {
        "conversations": [
            {"from": "human", "value": "Weather?"},
            {"from": "function_call", "value": "{}"},
            {"from": "observation", "value": "sunny"},
            {"from": "gpt", "value": "Sunny."},
        ]
    }
    _, problems = RowConverter("sharegpt")(3, row)
    assert problems and "unknown role 'function_call'" in problems[0].message and problems[0].row == 3
    converter = RowConverter("sharegpt", role_map={"function_call": "assistant", "observation": "user"})
    messages, problems = converter(3, row)
    assert problems == [] and [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    parts = {
        "messages": [
            USER,
            {
                "role": "assistant",
                "content": [{"type": "reasoning", "value": "think"}, {"type": "text", "value": "Hi"}],
            },
        ]
    }
    _, problems = RowConverter("messages")(0, parts)
    assert "non-text content (part type 'reasoning')" in problems[0].message
    messages, problems = RowConverter("messages", text_part_types=["text", "reasoning"])(0, parts)
    assert problems == [] and messages[1]["content"] == "think\nHi"


def test_explicit_format_overrides_detection():
    rows = [{"text": "<|user|>\nQ<|end|>\n<|assistant|>\nA<|end|>", "prompt": "ignored", "response": "ignored"}]
    raw = read_rows(rows)
    assert convert_rows(raw, DataOptions()).report.format == "prompt_response"
    converted = convert_rows(raw, DataOptions(format="phi3_text"))
    assert converted.report.format == "phi3_text"
    assert converted.conversations[0][1]["content"] == "A"


def test_undetectable_and_unknown_formats_are_clear_errors():
    with pytest.raises(DataError, match="Cannot tell the chat format"):
        detect_format(["question", "answer"])
    with pytest.raises(ConfigError, match="Unknown data format 'openai'"):
        RowConverter("openai")
    with pytest.raises(ConfigError, match="role_map maps 'tool' to 'function'"):
        RowConverter("messages", role_map={"tool": "function"})


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_files_of_every_kind_are_read(tmp_path, suffix):
    rows = [{"prompt": "Hi", "response": "Hello!"}, {"prompt": "Bye", "response": "Goodbye."}]
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".csv":
        path.write_text("prompt,response\nHi,Hello!\nBye,Goodbye.\n")
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    raw = read_rows(path)
    assert raw.rows == rows and raw.source == path.name and raw.fingerprint


def test_dataset_and_datasetdict_are_accepted():
    dataset = datasets.Dataset.from_list([EXAMPLES["messages"]])
    assert read_rows(dataset).rows == [EXAMPLES["messages"]]
    assert read_rows(datasets.DatasetDict({"train_sft": dataset})).rows == [EXAMPLES["messages"]]
    with pytest.raises(ConfigError, match=r"no split 'test'; it has \['train'\]"):
        read_rows(datasets.DatasetDict({"train": dataset}), split="test")


@pytest.mark.parametrize("split_setting", ["eval_split", "dataset_split"])
def test_a_split_asked_of_a_local_file_is_refused_before_anything_loads(tmp_path, split_setting):
    """A local file has no splits: eval_split on it used to be ignored, evaluating on the training rows. The recipe
    refuses it before the tokenizer or the data load (the model directory does not even exist)."""
    from phi3_lora_hub import Phi3LoraRecipe

    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(EXAMPLES["prompt_response"]) + "\n")
    recipe = Phi3LoraRecipe("./no-such-model-dir", str(path), **{split_setting: "test"})
    for step in (recipe.train, recipe.prepare_data, recipe.build_trainer):
        with pytest.raises(ConfigError, match=r"chats.jsonl is a local file: it has no splits, so split 'test'") as e:
            step()
        assert "eval_dataset=" in str(e.value) and "eval_size=" in str(e.value)
    with pytest.raises(ConfigError, match="has no splits"):
        Phi3LoraRecipe("./no-such-model-dir", [EXAMPLES["prompt_response"]], eval_split="test").prepare_data()
    with pytest.raises(ConfigError, match="has no splits"):
        read_rows(path, split="train")


def test_bad_files_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": oops}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_rows(path)
    with pytest.raises(DataError, match="does not exist"):
        read_rows(tmp_path / "missing.jsonl")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        read_rows(tmp_path / "data.txt")


def test_hub_dataset_offline_is_a_clear_error():
    with pytest.raises(DataError, match="Could not load the Hub dataset 'HuggingFaceH4/ultrachat_200k'"):
        read_rows("HuggingFaceH4/ultrachat_200k", split="train_sft")


TOOLS = [{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object"}}]
TOOLS_TEXT = "You have access to the following tools:\n" + json.dumps(TOOLS)


def test_tool_definitions_are_rendered_into_the_system_turn():
    """glaive's `tools` column used to disappear: the model never saw which tools it was calling."""
    sharegpt = {**EXAMPLES["sharegpt"], "tools": json.dumps(TOOLS)}  # a JSON string, as LLaMA-Factory stores it
    messages, problems = RowConverter("sharegpt")(0, sharegpt)
    assert problems == [] and messages[0]["role"] == "system"
    assert messages[0]["content"] == "Be brief.\n\n" + TOOLS_TEXT
    no_system = {"messages": [USER, ASSISTANT], "functions": TOOLS}  # a list, under the older OpenAI name
    messages, problems = RowConverter("messages")(0, no_system)
    assert problems == [] and messages[0] == {"role": "system", "content": TOOLS_TEXT}
    assert messages[1:] == [USER, ASSISTANT]
    for empty in ("[]", "", None, []):
        assert RowConverter("messages")(0, {"messages": [USER, ASSISTANT], "tools": empty}) == ([USER, ASSISTANT], [])
    _, problems = RowConverter("messages")(2, {"messages": [USER, ASSISTANT], "tools": "get_weather(city)"})
    assert str(problems[0]) == "row 2, tools: not valid JSON; expected a JSON list of tools"
    _, problems = RowConverter("messages")(0, {"messages": [USER, ASSISTANT], "tools": 3})
    assert str(problems[0]) == "row 0, tools: expected a list of tool definitions, got int"


def test_columns_a_format_does_not_read_are_reported_once(tmp_path, caplog, small_base):
    import logging

    from phi3_lora_hub import Phi3LoraRecipe

    rows = [{**EXAMPLES["alpaca"], "id": i, "tools": "[]", "score": 0.5} for i in range(4)]
    converted = convert_rows(read_rows(rows), DataOptions())
    assert converted.report.unused_columns == ["id", "score", "tools"]  # alpaca does not read tools
    assert "columns not used by the alpaca format (ignored): id, score, tools" in converted.report.summary()
    sharegpt = convert_rows(read_rows([{**EXAMPLES["sharegpt"], "tools": "[]", "id": 1}]), DataOptions())
    assert sharegpt.report.unused_columns == ["id"]
    recipe = Phi3LoraRecipe(str(small_base), rows, output_dir=str(tmp_path / "out"))
    with caplog.at_level(logging.INFO):
        data = recipe.prepare_data()
    assert data.train_report.unused_columns == ["id", "score", "tools"]
    mentions = [r for r in caplog.records if "columns not used" in r.getMessage()]
    assert len(mentions) == 1


def test_the_eval_report_counts_the_held_out_rows_actually_evaluated_on(small_base):
    """max_eval_samples caps the held-out rows: the report (and so the card) counts what was measured."""
    from phi3_lora_hub import Phi3LoraRecipe

    rows = [{**EXAMPLES["alpaca"], "output": "answer " * (i + 1)} for i in range(20)]
    recipe = Phi3LoraRecipe(str(small_base), rows, eval_size=10, max_eval_samples=3)
    data = recipe.prepare_data()
    assert len(data.eval) == 3 and data.eval_report.rows_used == 3
    labels = [label for row in data.eval["labels"] for label in row]
    assert data.eval_report.trained_tokens == sum(label != -100 for label in labels)
    assert data.eval_report.tokens == sum(data.eval["length"])
    assert len(data.train) == data.train_report.rows_used == 10  # the other 7 held out stay out of training


def test_a_dataset_is_identified_by_its_rows_for_the_cache():
    """The cache key of a Dataset is a hash of its rows (datasets' own fingerprint is private): equal rows give one
    key, changed rows another."""
    rows = [EXAMPLES["messages"], EXAMPLES["messages"]]
    first = read_rows(datasets.Dataset.from_list(rows)).fingerprint
    assert first is not None and first == read_rows(datasets.Dataset.from_list(rows)).fingerprint
    goodbye = {**ASSISTANT, "content": "Goodbye."}
    changed = [EXAMPLES["messages"], {"messages": [*EXAMPLES["messages"]["messages"][:-1], goodbye]}]
    assert read_rows(datasets.Dataset.from_list(changed)).fingerprint not in (None, first)
