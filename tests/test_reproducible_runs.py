"""Same seed, same settings: the same adapter, bit for bit, on CPU, for every backend.

Each run trains three steps of the small untrained tiny Phi-3 in this process after touching the global RNG
differently, so a LoRA initialisation that reads the global RNG (instead of the run's seed) gives another adapter.
The 2-process runs are in ``tests/distributed/test_scale_reproducible_runs.py``.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from phi3_lora_hub import Phi3LoraRecipe
from phi3_lora_hub.data.sample import sample_conversations

TRAINING = {
    "max_steps": 3,
    "per_device_train_batch_size": 4,
    "learning_rate": 1e-2,
    "save_steps": 3,
    "logging_steps": 1,
    "disable_tqdm": True,
    "seed": 42,
}
EVALUATION = {"num_samples": 0, "on_train_end": False}
BACKENDS = {
    "peft": {"r": 4, "lora_alpha": 8},
    "loralib": {"backend": "loralib", "r": 4, "lora_alpha": 8, "qkv_slices": ["q", "v"]},
}


def train(base, output, lora, *, noise: int, training=None) -> dict[str, torch.Tensor]:
    """Train after drawing ``noise`` numbers from the global RNG; return the saved PEFT adapter's tensors."""
    torch.manual_seed(1000 + noise)
    torch.rand(noise)
    recipe = Phi3LoraRecipe(
        str(base),
        sample_conversations(24),
        output_dir=str(output),
        training={**TRAINING, **(training or {})},
        lora=lora,
        evaluation=EVALUATION,
    )
    result = recipe.train()
    return load_file(str(result.adapter_dir / "adapter_model.safetensors"))


def assert_bit_identical(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_two_runs_with_the_same_seed_give_the_same_adapter_bit_for_bit(backend, small_base, tmp_path):
    if backend == "loralib":
        pytest.importorskip("loralib")
    first = train(small_base, tmp_path / "first", BACKENDS[backend], noise=1)
    second = train(small_base, tmp_path / "second", BACKENDS[backend], noise=7)
    assert_bit_identical(first, second)
    other_seed = train(small_base, tmp_path / "other", BACKENDS[backend], noise=1, training={"seed": 43})
    assert any(not torch.equal(tensor, other_seed[name]) for name, tensor in first.items())


def test_a_resumed_loralib_run_ends_with_the_adapter_of_an_uninterrupted_run(small_base, tmp_path):
    pytest.importorskip("loralib")
    lora = BACKENDS["loralib"]
    straight = train(small_base, tmp_path / "straight", lora, noise=1, training={"max_steps": 4, "save_steps": 2})
    train(small_base, tmp_path / "cut", lora, noise=2, training={"max_steps": 4, "save_steps": 2})
    # Resume the second run from its step-2 checkpoint, in a process whose global RNG holds something else again.
    torch.manual_seed(99)
    recipe = Phi3LoraRecipe(
        str(small_base),
        sample_conversations(24),
        output_dir=str(tmp_path / "cut"),
        training={**TRAINING, "max_steps": 4, "save_steps": 2},
        lora=lora,
        evaluation=EVALUATION,
    )
    result = recipe.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-2"))
    assert_bit_identical(straight, load_file(str(result.adapter_dir / "adapter_model.safetensors")))


def test_the_qlora_model_preparation_path_gives_the_same_adapter_twice(small_base, tmp_path):
    """QLoRA's CPU-testable part: the recipe trains a model made ready by peft's prepare_model_for_kbit_training.

    Loading in 4 bits needs CUDA and bitsandbytes; what follows the load (k-bit preparation, then PEFT's LoRA
    initialisation after TRL seeds the run) is the same code for a full-precision model, tested here.
    """
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    adapters = []
    for noise in (1, 7):
        torch.manual_seed(1000 + noise)
        torch.rand(noise)
        recipe = Phi3LoraRecipe(
            str(small_base),
            sample_conversations(24),
            output_dir=str(tmp_path / f"run{noise}"),
            training=TRAINING,
            lora=BACKENDS["peft"],
            evaluation=EVALUATION,
        )
        model = prepare_model_for_kbit_training(
            AutoModelForCausalLM.from_pretrained(str(small_base)), use_gradient_checkpointing=False
        )
        recipe.build_trainer(model=model)
        result = recipe.train()
        adapters.append(load_file(str(result.adapter_dir / "adapter_model.safetensors")))
    assert_bit_identical(*adapters)
