"""Staging (immutable, adapter-only copies of checkpoints) and the completion marker of resumable ones."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from phi3_lora_hub.hub.files import adapter_file_names, missing_checkpoint_files, resumable_file_names
from phi3_lora_hub.hub.marker import CompletionMarker
from phi3_lora_hub.hub.staging import clear_stage_root, stage

CHECKPOINT_FILES = {
    "adapter_model.safetensors": b"\x00weights-v1",
    "adapter_config.json": b'{"r": 8}',
    "tokenizer.json": b"{}",
    "tokenizer_config.json": b"{}",
    "chat_template.jinja": b"{{ messages }}",
    "generation_config.json": b"{}",
    "phi3_lora_recipe.yaml": b"model: x\n",
    "trainer_state.json": json.dumps({"global_step": 4, "log_history": []}).encode(),
    "README.md": b"peft's own card",
    "optimizer.pt": b"pickle",
    "scheduler.pt": b"pickle",
    "rng_state.pth": b"pickle",
    "training_args.bin": b"pickle with hub_token",
    "adapter_model.bin": b"a pickle that must never travel",
    "notes.pkl": b"pickle",
}


def write_checkpoint(directory: Path, files: dict[str, bytes] = CHECKPOINT_FILES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory


def test_adapter_files_are_an_allowlist_without_pickles_or_the_peft_card(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint-4")
    names = adapter_file_names(checkpoint)
    assert names == sorted(
        [
            "adapter_model.safetensors",
            "adapter_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "chat_template.jinja",
            "generation_config.json",
            "phi3_lora_recipe.yaml",
            "trainer_state.json",
        ]
    )
    assert "training_args.bin" not in resumable_file_names(checkpoint)
    assert "optimizer.pt" in resumable_file_names(checkpoint)


def test_staging_survives_rotation_and_holds_what_was_saved(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "out" / "checkpoint-4")
    staged = stage(checkpoint, tmp_path / "out" / "_hubstage", 4, resumable=True)
    shutil.rmtree(checkpoint)  # Trainer's rotation (save_total_limit) deletes the folder while the push waits
    assert (staged.adapter_dir / "adapter_model.safetensors").read_bytes() == b"\x00weights-v1"
    assert sorted(p.name for p in staged.adapter_dir.iterdir()) == sorted(adapter_file_names(staged.adapter_dir))
    assert staged.resume_dir is not None and (staged.resume_dir / "optimizer.pt").is_file()
    assert not (staged.resume_dir / "training_args.bin").exists()
    assert staged.changed_files() == []


def test_staging_uses_hard_links_and_notices_files_rewritten_in_place(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint-2")
    staged = stage(checkpoint, tmp_path / "_hubstage", 2, resumable=False)
    weights = staged.adapter_dir / "adapter_model.safetensors"
    assert os.stat(weights).st_ino == os.stat(checkpoint / "adapter_model.safetensors").st_ino
    with open(checkpoint / "adapter_model.safetensors", "wb") as handle:  # an in-place rewrite of the same file
        handle.write(b"\x00weights-v2 longer")
    assert staged.changed_files() == ["adapter/adapter_model.safetensors"]


def test_a_new_staging_of_a_step_replaces_the_old_one_and_clearing_removes_all(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint-2")
    root = tmp_path / "_hubstage"
    stage(checkpoint, root, 2, resumable=False)
    (root / "step-2" / "adapter" / "stale.txt").write_text("left over")
    staged = stage(checkpoint, root, 2, resumable=False)
    assert not (staged.adapter_dir / "stale.txt").exists()
    stage(checkpoint, root, 6, resumable=False, final=True)
    assert clear_stage_root(root) == ["final-step-6", "step-2"]
    assert not root.exists()


def test_partial_checkpoints_are_recognised(tmp_path):
    complete = write_checkpoint(tmp_path / "checkpoint-2")
    assert missing_checkpoint_files(complete, resumable=True) == []
    partial = write_checkpoint(
        tmp_path / "checkpoint-4", {"adapter_model.safetensors": b"x", "adapter_config.json": b"{}"}
    )
    assert missing_checkpoint_files(partial, resumable=False) == ["trainer_state.json"]
    assert missing_checkpoint_files(partial, resumable=True) == [
        "trainer_state.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
    ]


def test_completion_marker_round_trip_and_verification(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint-4")
    marker = CompletionMarker.for_directory(checkpoint, 4)
    assert "training_args.bin" not in marker.files and "optimizer.pt" in marker.files
    parsed = CompletionMarker.from_json(marker.to_json())
    assert parsed == marker and parsed.problems(checkpoint) == []
    (checkpoint / "optimizer.pt").write_bytes(b"other")
    (checkpoint / "scheduler.pt").unlink()
    assert parsed.problems(checkpoint) == [
        "optimizer.pt has another sha256 than the marker says",
        "scheduler.pt is missing",
    ]


@pytest.mark.parametrize(
    "text", ["", "{}", '{"format": "other"}', "[1]", '{"format": "phi3-lora-hub/checkpoint-complete@1"}']
)
def test_foreign_or_broken_markers_are_refused(text):
    with pytest.raises(ValueError):
        CompletionMarker.from_json(text)


def test_the_evaluation_files_are_published_with_the_adapter():
    from phi3_lora_hub.hub.files import ADAPTER_FILES
    from phi3_lora_hub.run_file_names import EVAL_REPORT_FILE, SAMPLES_FILE

    assert {EVAL_REPORT_FILE, SAMPLES_FILE} <= set(ADAPTER_FILES)
