"""Every accelerate config in examples/accelerate/ parses with accelerate's loader, turns into the launcher
environment ``accelerate launch`` would set, and resolves (through accelerate's own FSDP and DeepSpeed plugins) to
a launch the recipe accepts. Launch settings that would break the recipe are refused before anything is loaded.

No process is started here; tests/distributed/test_scale_dry_runs.py launches the configs for real.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from phi3_testing import free_port
from scale_testing import ACCELERATE_CONFIGS

from phi3_lora_hub import ConfigError, Phi3LoraRecipe
from phi3_lora_hub.distributed.launch import check_launch, launch_training_overrides
from phi3_lora_hub.distributed.launch_plan import read_launch_plan

EXPECTED = {
    "ddp.yaml": ("MULTI_GPU", "ddp"),
    "fsdp.yaml": ("FSDP", "fsdp"),
    "fsdp_qlora.yaml": ("FSDP", "fsdp"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", "deepspeed"),
    "deepspeed_zero3.yaml": ("DEEPSPEED", "deepspeed"),
    "multi_node.yaml": ("MULTI_GPU", "ddp"),
}
CONFIGS = sorted(ACCELERATE_CONFIGS.glob("*.yaml"))
LAUNCH_ENV_PREFIXES = ("ACCELERATE_", "FSDP_")


def launcher_environment(config: Path, *extra: str) -> dict[str, str]:
    """The ACCELERATE_*/FSDP_* variables ``accelerate launch --config_file CONFIG`` gives its processes.

    Runs accelerate's own argument parser, config validation and environment preparation (the code
    ``accelerate launch`` runs before it starts any process), with 2 processes and a free port.
    """
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    argv = ["--config_file", str(config), "--num_processes", "2", "--main_process_port", str(free_port()), *extra]
    args, defaults, from_config = _validate_launch_command(launch_command_parser().parse_args([*argv, "train.py"]))
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return {key: value for key, value in env.items() if key.startswith(LAUNCH_ENV_PREFIXES)}


@pytest.fixture
def launched(monkeypatch):
    """``launched(config, *extra, gpu=False)``: this process's environment as 1 of 2 processes of that launch."""

    def launch(config: Path, *extra: str, gpu: bool = False):
        for key in list(os.environ):
            if key.startswith(LAUNCH_ENV_PREFIXES):
                monkeypatch.delenv(key)
        for key, value in launcher_environment(config, *extra).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("WORLD_SIZE", "2")
        return read_launch_plan(gpu=gpu)

    return launch


def edited_config(source: Path, target: Path, **changes) -> Path:
    """A copy of an accelerate config with top-level or ``section.key`` values changed."""
    settings = yaml.safe_load(source.read_text())
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition("__")
        (settings[section] if section else settings)[key] = value
    target.write_text(yaml.safe_dump(settings))
    return target


def recipe(**settings) -> Phi3LoraRecipe:
    """A recipe for Phi-3-mini as in examples/phi3_lora.yaml (nothing is loaded by the constructor)."""
    return Phi3LoraRecipe.from_yaml(ACCELERATE_CONFIGS.parent / "phi3_lora.yaml", **settings)


def test_the_expected_configs_are_shipped_and_each_has_its_launch_command_in_the_readme():
    assert {path.name for path in CONFIGS} == set(EXPECTED)
    readme = (ACCELERATE_CONFIGS.parent / "README.md").read_text()
    for path in CONFIGS:
        assert f"--config_file examples/accelerate/{path.name}" in readme, path.name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_parses_with_accelerates_loader(path):
    config = load_config_from_file(str(path))
    distributed_type, _ = EXPECTED[path.name]
    assert config.distributed_type == distributed_type
    assert config.compute_environment == "LOCAL_MACHINE" and not config.use_cpu
    # Precision is the recipe's (bf16 where the GPU has it): a launcher setting could only disagree with it.
    assert config.mixed_precision == "no"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_resolves_to_a_launch_the_recipe_accepts(path, launched):
    plan = launched(path, gpu=True)
    assert plan.strategy == EXPECTED[path.name][1] and plan.processes == 2
    quantization = "4bit" if path.name == "fsdp_qlora.yaml" else None
    notes = check_launch(plan, recipe(quantization=quantization).config)
    assert all("QLoRA" in note for note in notes), notes  # only the not-run-here note of the QLoRA config


def test_fsdp_config_shards_with_full_state_dicts_and_checkpoints_activations_itself(launched):
    plan = launched(ACCELERATE_CONFIGS / "fsdp.yaml", gpu=True)
    assert (plan.fsdp_version, plan.fsdp_state_dict_type) == (2, "FULL_STATE_DICT")
    assert plan.shards_weights and plan.fsdp_activation_checkpointing
    training = recipe(training={"activation_checkpointing": True}).config.training
    overrides = launch_training_overrides(plan, training)
    assert overrides["activation_checkpointing"][0] is False  # the Trainer refuses FSDP's and its own together


def test_fsdp_qlora_config_is_fsdp1_without_original_parameters(launched):
    plan = launched(ACCELERATE_CONFIGS / "fsdp_qlora.yaml", gpu=True)
    assert (plan.fsdp_version, plan.fsdp_state_dict_type, plan.shards_weights) == (1, "FULL_STATE_DICT", True)
    assert os.environ["FSDP_USE_ORIG_PARAMS"] == "false"
    assert os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"


def test_without_a_gpu_an_fsdp_launch_is_data_parallel_and_the_recipe_says_so(launched):
    plan = launched(ACCELERATE_CONFIGS / "fsdp.yaml", gpu=False)
    assert not plan.shards_weights and plan.data_parallel
    notes = check_launch(plan, recipe().config)
    assert any("no GPU" in note for note in notes)


@pytest.mark.parametrize(("name", "stage"), [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_configs_leave_batch_settings_to_the_recipe(launched, name, stage):
    plan = launched(ACCELERATE_CONFIGS / name, gpu=True)
    assert plan.zero_stage == stage and plan.deepspeed_fixed == {}
    assert plan.shards_weights is (stage == 3)
    if stage == 3:
        assert plan.zero3_gathers_16bit_weights is True


def test_zero3_switches_the_recipe_to_reentrant_activation_checkpointing(launched):
    plan = launched(ACCELERATE_CONFIGS / "deepspeed_zero3.yaml", gpu=True)
    training = {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False}}
    value, reason = launch_training_overrides(plan, training)["activation_checkpointing_kwargs"]
    assert value == {"use_reentrant": True} and "trl#2514" in reason


def test_ddp_skips_the_unused_parameter_search_unless_the_user_chose(launched):
    plan = launched(ACCELERATE_CONFIGS / "ddp.yaml")
    assert launch_training_overrides(plan, {})["ddp_find_unused_parameters"][0] is False
    assert "ddp_find_unused_parameters" not in launch_training_overrides(plan, {"ddp_find_unused_parameters": True})


def test_sharded_fsdp_state_dicts_are_refused(launched, tmp_path):
    config = edited_config(
        ACCELERATE_CONFIGS / "fsdp.yaml", tmp_path / "f.yaml", fsdp_config__fsdp_state_dict_type="SHARDED_STATE_DICT"
    )
    with pytest.raises(ConfigError, match="FULL_STATE_DICT"):
        check_launch(launched(config, gpu=True), recipe().config)


def test_fsdp2_without_a_state_dict_type_is_refused_because_accelerate_defaults_to_sharded(launched, tmp_path):
    source = yaml.safe_load((ACCELERATE_CONFIGS / "fsdp.yaml").read_text())
    del source["fsdp_config"]["fsdp_state_dict_type"]
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(source))
    with pytest.raises(ConfigError, match="SHARDED_STATE_DICT"):
        check_launch(launched(tmp_path / "f.yaml", gpu=True), recipe().config)


def test_zero3_without_gathered_16bit_weights_is_refused(launched, tmp_path):
    config = edited_config(
        ACCELERATE_CONFIGS / "deepspeed_zero3.yaml", tmp_path / "z.yaml", deepspeed_config__zero3_save_16bit_model=False
    )
    with pytest.raises(ConfigError, match="zero3_save_16bit_model"):
        check_launch(launched(config, gpu=True), recipe().config)


def test_deepspeed_batch_settings_that_contradict_the_recipe_are_refused(launched, tmp_path):
    config = edited_config(
        ACCELERATE_CONFIGS / "deepspeed_zero2.yaml",
        tmp_path / "z.yaml",
        deepspeed_config__gradient_accumulation_steps=1,
    )
    plan = launched(config, gpu=True)
    assert plan.deepspeed_fixed == {"gradient_accumulation_steps": 1}
    check_launch(plan, recipe(training={"gradient_accumulation_steps": 1}).config)  # agrees: accepted
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=1 vs gradient_accumulation_steps=4"):
        check_launch(plan, recipe().config)


@pytest.mark.parametrize("name", ["fsdp.yaml", "deepspeed_zero3.yaml"])
def test_loralib_backend_is_refused_with_sharded_weights(launched, name):
    with pytest.raises(ConfigError, match="loralib"):
        check_launch(launched(ACCELERATE_CONFIGS / name, gpu=True), recipe(lora={"backend": "loralib"}).config)


def test_loralib_backend_is_accepted_with_ddp(launched):
    assert check_launch(launched(ACCELERATE_CONFIGS / "ddp.yaml"), recipe(lora={"backend": "loralib"}).config) == []


def test_qlora_under_zero3_is_refused_before_loading(launched):
    with pytest.raises(ConfigError, match="device_map"):
        check_launch(
            launched(ACCELERATE_CONFIGS / "deepspeed_zero3.yaml", gpu=True), recipe(quantization="4bit").config
        )


def test_a_launcher_precision_the_recipe_does_not_use_is_reported(launched):
    plan = launched(ACCELERATE_CONFIGS / "ddp.yaml", "--mixed_precision", "fp16")
    assert plan.mixed_precision == "fp16"
    notes = check_launch(plan, recipe().config)  # on this CPU machine the recipe trains in fp32
    assert any("mixed_precision=fp16" in note for note in notes)


def test_parallelism_set_in_the_training_arguments_is_reported_as_unchecked(launched):
    notes = check_launch(launched(ACCELERATE_CONFIGS / "ddp.yaml"), recipe(training={"fsdp": "full_shard"}).config)
    assert any("training.fsdp" in note for note in notes)
