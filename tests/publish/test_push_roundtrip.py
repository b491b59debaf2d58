"""Push round trip through the real huggingface_hub client, in both upload modes (Xet-on/regular, LFS)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file

from phi3_lora_hub.hub.files import PICKLE_SUFFIXES
from tests.publish.helpers import assert_hub_holds, commit_titles, push_threads


def adapter_weights_from_hub(base_dir: Path, repo_id: str, revision: str) -> dict[str, torch.Tensor]:
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), repo_id, revision=revision)
    return get_peft_model_state_dict(model)


def test_checkpoints_reach_their_branches_and_main_adapter_only(
    hub, hub_mode, make_recipe, hub_repo_id, small_base, tmp_path
):
    recipe = make_recipe(hub_model_id=hub_repo_id)
    result = recipe.train()
    report = result.hub
    output = Path(recipe.config.output_dir)

    assert report.ok, report.summary()
    assert [push.label for push in report.pushed] == ["step 2", "step 4", "step 6", "final adapter (step 6)"]
    assert report.repo_url == f"{hub.url}/{hub_repo_id}"
    api = HfApi()
    assert sorted(ref.name for ref in api.list_repo_refs(hub_repo_id).branches) == [
        "main",
        "step-2",
        "step-4",
        "step-6",
    ]
    # One commit per checkpoint plus the final adapter: nothing duplicated, titles from the staged step.
    assert commit_titles(api, hub_repo_id) == [
        "Adapter after step 6",
        "Checkpoint step 6",
        "Checkpoint step 4",
        "Checkpoint step 2",
        "initial commit",
    ]

    # main holds the final adapter and each branch its checkpoint: the same sha256 for every file.
    main = assert_hub_holds(api, hub_repo_id, "main", output / "adapter", tmp_path / "downloads")
    assert "loss_curve.png" in main and "trainer_log.json" in main
    for step in (2, 4, 6):
        files = assert_hub_holds(
            api, hub_repo_id, f"step-{step}", output / f"checkpoint-{step}", tmp_path / "downloads"
        )
        assert not [name for name in files if name.endswith(PICKLE_SUFFIXES)]
        assert not {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"} & set(files)
    card = (tmp_path / "downloads" / "step-2" / "README.md").read_text()
    assert "This card describes the checkpoint at step 2." in card

    # peft loads every branch with exactly the weights of the local checkpoint.
    for revision, local in (("step-2", output / "checkpoint-2"), ("main", output / "adapter")):
        expected = load_file(local / "adapter_model.safetensors")
        loaded = adapter_weights_from_hub(small_base, hub_repo_id, revision)
        assert expected.keys() == loaded.keys()
        assert all(torch.equal(expected[key], loaded[key]) for key in expected), revision

    assert not (output / "_hubstage").exists()
    assert not push_threads()


def test_the_usage_code_of_the_card_runs(hub, make_recipe, hub_repo_id, capsys):
    recipe = make_recipe(hub_model_id=hub_repo_id, training={"max_steps": 2})
    assert recipe.train().hub.ok
    card = HfApi().hf_hub_download(hub_repo_id, "README.md")
    code = re.search(r"```python\n(.*?)```", Path(card).read_text(), re.DOTALL).group(1)
    exec(compile(code.replace("max_new_tokens=256", "max_new_tokens=8"), "card", "exec"), {})
    assert capsys.readouterr().out.strip() != ""
