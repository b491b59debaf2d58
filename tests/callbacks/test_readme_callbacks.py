"""The README's "Callbacks in your own trainer" snippets run as written, each in a plain ``SFTTrainer``."""

from __future__ import annotations

import re

import pytest
from phi3_testing import ROOT

import phi3_lora_hub

CALLBACKS = sorted(name for name in phi3_lora_hub.__all__ if name.endswith("Callback"))
WRITES = {
    "SampleGenerationsCallback": "sample_generations.json",
    "CheckpointFilesCallback": "generation_config.json",
    "ModelCardCallback": "README.md",
}


def callback_snippets() -> dict[str, str]:
    """The section's Python blocks, by the one exported callback each imports."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Callbacks in your own trainer\n", 1)[1].split("\n## ", 1)[0]
    snippets = {}
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL):
        (name,) = re.findall(r"from phi3_lora_hub import (\w+)", block)
        snippets[name] = block
    return snippets


def test_the_readme_shows_every_exported_callback_in_a_plain_trainer():
    assert sorted(callback_snippets()) == CALLBACKS and len(CALLBACKS) == 4


@pytest.mark.parametrize("name", CALLBACKS)
def test_each_readme_callback_snippet_runs_as_written(name, request, plain_parts, sft_args, tmp_path):
    from transformers import AutoModelForCausalLM

    model_dir, tokenizer, rows, lora = plain_parts
    snippet = callback_snippets()[name]
    if name == "HubPushCallback":  # the local Hub, and a repository its test user may create
        request.getfixturevalue("hub")
        snippet = snippet.replace('"me/phi3-chat-lora"', repr(request.getfixturevalue("hub_repo_id")))
    namespace = {
        "model": AutoModelForCausalLM.from_pretrained(model_dir),
        "tokenizer": tokenizer,
        "args": sft_args(tmp_path),
        "data": rows,
        "lora": lora,
    }
    exec(compile(snippet, f"README.md ({name})", "exec"), namespace)
    if name == "HubPushCallback":
        assert namespace["push"].report.ok
    else:
        assert all((tmp_path / f"checkpoint-{step}" / WRITES[name]).is_file() for step in (2, 4))
