"""Every example script runs offline on the tiny Phi-3 (``--tiny``), and the YAML example parses and resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest
from phi3_testing import ROOT, subprocess_env

from phi3_lora_hub import Phi3LoraRecipe

EXAMPLES = ROOT / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["phi3_ultrachat.py", "qlora.py", "own_jsonl.py"])
def test_example_runs_with_tiny(script, tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--tiny", "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_yaml_example_resolves_to_a_valid_recipe():
    recipe = Phi3LoraRecipe.from_yaml(EXAMPLES / "phi3_lora.yaml")
    assert recipe.config.model == "microsoft/Phi-3-mini-4k-instruct"
    assert recipe.config.dataset_split == "train_sft" and recipe.config.eval_split == "test_sft"
    assert recipe.config.lora["target_modules"] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert recipe.config.training["learning_rate"] == 1e-4


@pytest.mark.slow
def test_sfttrainer_callbacks_example_pushes_to_the_local_hub(hub, hub_repo_id, tmp_path):
    from huggingface_hub import HfApi

    script = EXAMPLES / "sfttrainer_callbacks.py"
    done = subprocess.run(
        [sys.executable, str(script), "--tiny", "--hub-model-id", hub_repo_id, "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=subprocess_env(HF_HUB_OFFLINE="0"),  # HF_ENDPOINT is the session's local hub
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 20: pushed to main + step-20" in done.stdout
    api = HfApi()
    assert {ref.name for ref in api.list_repo_refs(hub_repo_id).branches} == {"main", "step-10", "step-20"}
    files = api.list_repo_files(hub_repo_id)
    assert {"README.md", "adapter_model.safetensors", "adapter_config.json", "training_args.json"} <= set(files)
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth"))]
