"""A wrong local path (model, adapter or dataset) says what was looked for, where, and what to pass; it is never
reported as a missing or malformed Hub repository."""

from __future__ import annotations

import json

import pytest

from phi3_lora_hub import ConfigError, DataError, ModelError, Phi3LoraRecipe
from phi3_lora_hub.data.sources import read_rows
from phi3_lora_hub.evaluation.models import ModelSpec
from phi3_lora_hub.model.loading import load_for_inference, load_phi3_config, load_tokenizer


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("reference", ["./models/phi3", "models/phi3-mini/v1", "/no/such/dir/phi3"])
def test_a_missing_local_model_directory_is_named_as_a_directory(in_tmp, reference):
    (in_tmp / "models").mkdir()
    for load in (lambda: load_tokenizer(reference), lambda: load_phi3_config(reference, None)):
        with pytest.raises(ModelError) as caught:
            load()
        message = str(caught.value)
        assert f"Model directory {reference!r} does not exist (looked for /" in message
        assert "repo" not in message.split("(looked")[0] and "Hub id such as microsoft/Phi-3" in message
        assert "model='tiny'" in message


def test_a_model_directory_without_its_files_and_a_file_given_as_model(in_tmp, small_base):
    (in_tmp / "empty").mkdir()
    with pytest.raises(ModelError, match=r"Model directory 'empty' has no config.json \(looked in /"):
        load_phi3_config("empty", None)
    (in_tmp / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"Model 'weights.bin' is a file, not a directory"):
        load_tokenizer("weights.bin")
    assert load_tokenizer(str(small_base)).convert_tokens_to_ids("<|end|>") > 0  # a real directory loads


def test_a_directory_given_as_dataset_names_its_data_files(in_tmp):
    folder = in_tmp / "chats"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"prompt": "Hi", "response": "Hello"}) + "\n")
    (folder / "notes.txt").write_text("x")
    with pytest.raises(DataError) as caught:
        read_rows("chats")
    message = str(caught.value)
    assert "is a directory" in message and "not a file" in message and "does not exist" not in message
    assert "'train.jsonl'" in message and "notes.txt" not in message and "chats/train.jsonl" in message
    (in_tmp / "empty").mkdir()
    with pytest.raises(DataError, match="is a directory .* with no .jsonl, .json, .csv, .parquet file"):
        read_rows("./empty")


def test_a_missing_dataset_file_says_where_it_looked_and_what_is_there(in_tmp):
    (in_tmp / "data").mkdir()
    (in_tmp / "data" / "chats.jsonl").write_text(json.dumps({"prompt": "Hi", "response": "Hello"}) + "\n")
    with pytest.raises(DataError) as caught:
        read_rows("data/chat.jsonl")
    message = str(caught.value)
    assert f"Dataset file 'data/chat.jsonl' does not exist (looked for {in_tmp / 'data' / 'chat.jsonl'})" in message
    assert "'chats.jsonl'" in message and "Hub dataset id" in message
    with pytest.raises(DataError, match="does not exist"):
        read_rows("data/missing-folder/x")  # a path, not a Hub id, since data/ is a folder here


def test_a_wrong_adapter_path_is_not_reported_as_a_missing_hub_repo(in_tmp):
    """The README once said `compare base quickstart-output/adapter`; the adapter is in quickstart-output/run/."""
    adapter = in_tmp / "quickstart-output" / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError) as caught:
        ModelSpec.parse("quickstart-output/adapter")
    message = str(caught.value)
    assert "Adapter directory 'quickstart-output/adapter' does not exist" in message
    assert "quickstart-output/run/adapter" in message and "Hub repo" not in message.split(".")[0]
    (in_tmp / "adapter.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="'adapter.safetensors' is a file, not a directory"):
        ModelSpec.parse("adapter.safetensors")
    assert ModelSpec.parse("me/phi3-lora@step-2").kind == "hub"  # a Hub id stays a Hub id
    assert ModelSpec.parse("quickstart-output/run/adapter").kind == "local"


def test_chat_and_merge_name_a_missing_adapter_directory(in_tmp, small_base):
    (in_tmp / "out").mkdir()
    with pytest.raises(ModelError, match="Adapter directory 'out/adapter' does not exist"):
        load_for_inference(str(small_base), "out/adapter")


def test_the_recipe_reports_a_missing_model_directory_before_reading_data(in_tmp):
    recipe = Phi3LoraRecipe("./phi3-local", [{"prompt": "Hi", "response": "Hello"}])
    with pytest.raises(ModelError, match="Model directory './phi3-local' does not exist"):
        recipe.train()
