"""Every example script runs offline on the tiny Phi-3 (``--tiny``), and the YAML example parses and resolves."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

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
    assert {"generation_config.json", "sample_generations.json"} <= set(files)  # from the example's other callbacks
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth"))]
    for step in (10, 20):
        assert (tmp_path / "out" / f"checkpoint-{step}" / "README.md").is_file()


# --- Every command and path in the READMEs runs as written ---------------------------------------------------------

READMES = [ROOT / "README.md", EXAMPLES / "README.md"]
REPO_FOLDERS = ("examples/", "model_card_templates/", "space_app/", "benchmarks/", "phi3_lora_hub/", "tests/")


def shell_commands(markdown: Path) -> list[str]:
    """The commands of the ```bash blocks of ``markdown``: continuation lines joined, shell loop keywords dropped."""
    commands, block, pending = [], False, ""
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            block = line.strip() == "```bash"
            continue
        if not block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text and not text.startswith(("#", "for ", "done")):
            commands.append(text)
    return commands


def words(command: str) -> list[str]:
    """The command's words without comments, leading VAR=value assignments and a trailing ``&``."""
    tokens = shlex.split(command, comments=True)
    while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
        tokens = tokens[1:]
    return tokens[:-1] if tokens and tokens[-1] == "&" else tokens


def cli_arguments(tokens: list[str]) -> list[str] | None:
    """The arguments given to phi3-lora-hub (directly or as ``-m phi3_lora_hub`` under a launcher), else None."""
    if tokens and tokens[0] == "phi3-lora-hub":
        return tokens[1:]
    for index, token in enumerate(tokens[:-1]):
        if token == "-m" and tokens[index + 1] == "phi3_lora_hub":
            return tokens[index + 2 :]
    return None


ALL_COMMANDS = [(readme.name, command) for readme in READMES for command in shell_commands(readme)]


def test_the_readmes_have_commands_to_check():
    assert len(ALL_COMMANDS) > 20 and sum(cli_arguments(words(c)) is not None for _, c in ALL_COMMANDS) > 15


@pytest.mark.parametrize(("readme", "command"), ALL_COMMANDS, ids=[f"{r}:{c[:60]}" for r, c in ALL_COMMANDS])
def test_every_readme_command_parses_and_names_files_that_exist(readme, command):
    import tomllib

    from phi3_lora_hub.cli.main import build_parser

    tokens = words(command)
    arguments = cli_arguments(tokens)
    if arguments is not None:
        try:
            build_parser().parse_args(arguments)
        except SystemExit as exit_:
            pytest.fail(f"{readme}: `{command}` does not parse (exit {exit_.code})")
    for token in tokens:
        if token.startswith(REPO_FOLDERS):
            assert (ROOT / token.split("#")[0]).exists(), f"{readme}: `{command}` names the missing {token}"
    if tokens[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
        assert set(tokens[1:]) <= set(targets), f"{readme}: `{command}`"
    if tokens[:2] == ["pip", "install"]:
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for extra in re.findall(r"\.\[([\w,]+)\]", command):
            assert set(extra.split(",")) <= set(extras), f"{readme}: `{command}`"


def paths_runs_produce() -> dict[str, str]:
    """Local paths the READMEs may name before they exist, each with what creates it."""
    import yaml

    from phi3_lora_hub.cli.main import build_parser
    from phi3_lora_hub.config.recipe_config import RecipeConfig

    quickstart = build_parser().parse_args(["quickstart"]).output_dir
    example = yaml.safe_load((EXAMPLES / "phi3_lora.yaml").read_text())["output_dir"]
    return {
        f"{quickstart}/run/adapter": "make quickstart",
        f"{quickstart}/data/compass.jsonl": "make quickstart",
        f"{example}/adapter": "phi3-lora-hub train examples/phi3_lora.yaml",
        f"{RecipeConfig().output_dir}/adapter": "a recipe with the default output_dir",
    }


def test_local_adapters_and_data_in_readme_commands_are_where_runs_put_them():
    """`compare base quickstart-output/adapter` named a folder the quickstart never writes (it is run/adapter)."""
    from phi3_lora_hub.local_paths import looks_local

    produced = paths_runs_produce()
    checked = 0
    for readme, command in ALL_COMMANDS:
        arguments = cli_arguments(words(command)) or []
        named = [value for option, value in itertools.pairwise(arguments) if option in ("--adapter", "--dataset")]
        if arguments[:1] in (["compare"], ["push"]):
            named += [value for value in arguments[1:3] if not value.startswith("-") and value != "base"]
        for path in named:
            if (ROOT / path).exists() or not (looks_local(path) or path.endswith((".jsonl", ".json", ".csv"))):
                continue  # a file of the checkout, or a Hub id
            assert path in produced, f"{readme}: `{command}` names {path}, which no documented run writes"
            checked += 1
    assert checked >= 5


def test_markdown_links_to_files_of_the_checkout_exist():
    for readme in READMES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8")):
            assert (readme.parent / target).exists(), f"{readme.name} links to the missing {target}"


@pytest.mark.slow
def test_the_readme_eval_and_compare_commands_run_as_written_after_the_quickstart(tmp_path):
    """Run in a fresh folder: the quickstart (few steps, no Hub), then README's eval and compare lines verbatim."""
    run = [sys.executable, "-m", "phi3_lora_hub"]
    options = {"capture_output": True, "text": True, "env": subprocess_env(), "cwd": tmp_path, "timeout": 900}
    done = subprocess.run([*run, "quickstart", "--no-push", "--max-steps", "20"], **options)
    assert done.returncode == 0, done.stderr[-3000:]
    commands = [c for _, c in ALL_COMMANDS if re.match(r"phi3-lora-hub (eval|compare) .*quickstart-output", c)]
    assert len(commands) == 2
    for command in commands:
        done = subprocess.run([*run, *words(command)[1:]], **options)
        assert done.returncode == 0, f"`{command}`:\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs" / "votes.jsonl").is_file()


def test_examples_write_under_the_git_ignored_runs_folder_by_default(monkeypatch):
    """They used to write phi3-my-lora/, phi3-qlora/, ... into the current folder (the repo root, in the READMEs)."""
    import importlib
    import shutil

    import yaml

    monkeypatch.syspath_prepend(str(EXAMPLES))
    offline = importlib.import_module("_offline")
    default = Path(offline.output_dir(None, "phi3-my-lora"))
    assert default.parent == ROOT / "runs" and offline.output_dir("elsewhere", "phi3-my-lora") == "elsewhere"
    assert yaml.safe_load((EXAMPLES / "phi3_lora.yaml").read_text())["output_dir"].startswith("runs/")
    for script in EXAMPLES.glob("*.py"):
        assert "args.output_dir or" not in script.read_text(), f"{script.name} has its own default output folder"
    if shutil.which("git") and (ROOT / ".git").exists():
        for path in (default / "adapter" / "adapter_model.safetensors", ROOT / "runs" / "phi3-ultrachat-lora"):
            checked = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT)
            assert checked.returncode == 0, f"{path} is not ignored by git"
