"""The real public datasets in ../shared/assets, in all five formats, with the real Phi-3 tokenizer.

Each file loads, converts and validates; the label mask is exact on every row (the trained tokens decode to
each assistant answer plus ``<|end|>``); and a tiny Phi-3 built around the real tokenizer (vocab 32064) trains
on it. Skipped when ../shared/assets is absent.
"""

from __future__ import annotations

import pytest
from phi3_testing import DATA_DIR, PHI3_TOKENIZER_DIR, requires_assets

from phi3_lora_hub import Phi3LoraRecipe
from phi3_lora_hub.data.prepare import DataOptions, convert_rows
from phi3_lora_hub.data.sources import read_rows
from phi3_lora_hub.data.tokenization import IGNORE_INDEX, tokenize_conversations
from phi3_lora_hub.model.tiny import TinyPhi3Config, tiny_phi3_cache_dir

pytestmark = requires_assets

TOOL_ROLES = {"function_call": "assistant", "observation": "user", "tool": "user"}
DATASETS = {
    # file: (expected format, conversion options)
    "mslearn_travel-finetune.jsonl": ("messages", {}),
    "llamafactory_reason_tool_use_demo_50.jsonl": (
        "messages",
        {"role_map": TOOL_ROLES, "text_part_types": ("text", "reasoning", "tool_call")},
    ),
    "fastchat_dummy_conversation.json": ("sharegpt", {}),
    "llamafactory_glaive_toolcall_en_demo.json": ("sharegpt", {"role_map": TOOL_ROLES}),
    "llamafactory_alpaca_en_demo.json": ("alpaca", {}),
    "llamafactory_lima.json": ("alpaca", {}),
    "phi3cookbook_data_sample_travel.jsonl": ("prompt_response", {}),
    "phi3cookbook_mlx_train.jsonl": ("phi3_text", {}),
}


def trained_text(tokenizer, ids, labels) -> list[str]:
    segments, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            segments.append(tokenizer.decode(current))
            current = []
    if current:
        segments.append(tokenizer.decode(current))
    return segments


@pytest.mark.parametrize("name", list(DATASETS))
def test_dataset_converts_and_masks_are_exact(name, real_tokenizer):
    expected_format, options = DATASETS[name]
    converted = convert_rows(read_rows(DATA_DIR / name), DataOptions(**options))
    assert converted.report.format == expected_format
    assert converted.report.rows_used == converted.report.rows_read > 0
    batch = tokenize_conversations(real_tokenizer, converted.conversations)
    mismatches = []
    for index, (messages, ids, labels) in enumerate(
        zip(converted.conversations, batch.input_ids, batch.labels, strict=True)
    ):
        answers = [m["content"] + "<|end|>" for m in messages if m["role"] == "assistant"]
        if trained_text(real_tokenizer, ids, labels) != answers:
            mismatches.append(index)
    assert mismatches == [], f"{len(mismatches)} rows with inexact masks, first: {mismatches[:5]}"


def test_tool_datasets_name_the_unknown_roles_without_a_role_map():
    with pytest.raises(Exception, match="unknown role 'function_call'"):
        convert_rows(read_rows(DATA_DIR / "llamafactory_glaive_toolcall_en_demo.json"), DataOptions())


@pytest.fixture(scope="module")
def tiny_with_real_tokenizer():
    return tiny_phi3_cache_dir(TinyPhi3Config(pretrain_steps=0), tokenizer_path=PHI3_TOKENIZER_DIR)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DATASETS))
def test_dataset_trains_with_the_real_tokenizer(name, tiny_with_real_tokenizer, tmp_path):
    _, options = DATASETS[name]
    recipe = Phi3LoraRecipe(
        str(tiny_with_real_tokenizer),
        str(DATA_DIR / name),
        output_dir=str(tmp_path / "out"),
        max_train_samples=24,
        role_map=options.get("role_map"),
        text_part_types=list(options.get("text_part_types", ["text"])),
        training={
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "max_length": 512,
            "save_steps": 3,
            "disable_tqdm": True,
        },
        lora={"r": 4},
    )
    result = recipe.train()
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert result.global_step == 3 and all(loss > 0 for loss in losses)
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert recipe.load_tokenizer().convert_tokens_to_ids("<|end|>") == 32007


# Options a file needs, as its README row says: the tool datasets need their tool roles mapped (and the reasoning
# demo its reasoning and tool-call parts trained as text); without them the error names role_map/text_part_types.
EVERY_FILE_OPTIONS = {
    "llamafactory_glaive_toolcall_en_demo.json": {"role_map": TOOL_ROLES},
    "llamafactory_reason_tool_use_demo_50.jsonl": {
        "role_map": TOOL_ROLES,
        "text_part_types": ["text", "reasoning", "tool_call"],
    },
}


@pytest.fixture(scope="module")
def smallest_with_real_tokenizer():
    config = TinyPhi3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, pretrain_steps=0)
    return tiny_phi3_cache_dir(config, tokenizer_path=PHI3_TOKENIZER_DIR)


@pytest.mark.slow
@pytest.mark.parametrize("max_length", [128, 256, 2048])
@pytest.mark.parametrize("name", sorted(path.name for path in DATA_DIR.glob("*")) if DATA_DIR.is_dir() else [])
def test_every_real_file_trains_at_every_max_length(name, max_length, smallest_with_real_tokenizer, tmp_path):
    """Default evaluation settings: answers cut by max_length (no complete one for the sample prompts) never stop
    training; only the first 60 rows, since at 128 tokens only 2 of the 50 tool-reasoning rows keep an answer
    token after their tool definitions."""
    recipe = Phi3LoraRecipe(
        str(smallest_with_real_tokenizer),
        str(DATA_DIR / name),
        output_dir=str(tmp_path / "out"),
        max_train_samples=60,  # the whole of the smaller files: at 128 tokens 2 of the 50 reasoning rows fit
        training={"max_steps": 1, "max_length": max_length, "per_device_train_batch_size": 2, "save_steps": 1},
        evaluation={"max_new_tokens": 8},
        lora={"r": 2},
        **EVERY_FILE_OPTIONS.get(name, {}),
    )
    result = recipe.train()
    assert result.global_step == 1 and (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert (result.adapter_dir / "README.md").is_file()
