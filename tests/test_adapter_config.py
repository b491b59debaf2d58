"""One read-and-check of adapter_config.json, for evaluation, compare and the Space."""

from __future__ import annotations

import json

import pytest

from phi3_lora_hub.errors import ModelError
from phi3_lora_hub.model.adapters import read_adapter_config

LORA = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "microsoft/Phi-3-mini-4k-instruct"}


def test_a_lora_config_reads_back_from_its_directory_or_its_file(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps(LORA))
    assert read_adapter_config(tmp_path) == LORA
    assert read_adapter_config(tmp_path / "adapter_config.json", "`me/lora` at `main`") == LORA


def test_a_directory_without_a_config_is_not_a_peft_adapter(tmp_path):
    with pytest.raises(ModelError, match=r"is not a PEFT adapter: it has no adapter_config.json"):
        read_adapter_config(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b" " * 1_000_001, "larger than 1 MB"),
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (json.dumps({**LORA, "peft_type": "IA3"}).encode(), "holds a 'IA3' adapter; only LoRA adapters"),
        (json.dumps({**LORA, "task_type": "SEQ_CLS"}).encode(), "is a SEQ_CLS adapter; a CAUSAL_LM adapter is needed"),
    ],
)
def test_a_config_that_is_not_a_causal_lm_lora_is_refused_saying_why(tmp_path, content, message):
    (tmp_path / "adapter_config.json").write_bytes(content)
    with pytest.raises(ModelError, match=message) as raised:
        read_adapter_config(tmp_path, "`me/lora` at `main`")
    assert str(raised.value).startswith("`me/lora` at `main`")
