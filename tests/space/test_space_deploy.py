"""Deploying the Space: the repository's files on the local Hub, the adapter cards, and the deployed app running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gradio
import pytest
from phi3_testing import FAKE_TOKEN, ROOT, free_port, subprocess_env
from space_testing import QUESTION, answers, wait_for_app

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.space.deploy import (
    CARD_START,
    GRADIO_VERSION,
    SpaceLook,
    build_space,
    deploy,
    render_readme,
    settings_for_deploy,
    space_card_data,
    space_modules,
    with_card_section,
)
from phi3_lora_hub.space.settings import SpaceSettings

BASE = "microsoft/Phi-3-mini-4k-instruct"
COMPASS, TERSE = "tester/space-deploy-compass", "tester/space-deploy-terse"  # cards change: not the shared repos


def front_matter(text: str) -> dict:
    import yaml

    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_the_space_readme_is_the_template_rendered_with_the_defaults():
    readme = (ROOT / "space_app" / "README.md").read_text(encoding="utf-8")
    assert readme == render_readme(SpaceSettings()), "space_app/README.md is stale: re-render the template"
    meta = front_matter(readme)
    assert (meta["sdk"], meta["sdk_version"], meta["app_file"]) == ("gradio", GRADIO_VERSION, "app.py")
    assert gradio.__version__ == GRADIO_VERSION  # the version the tests ran with is the one deployed
    assert meta["models"] == [BASE] and meta["preload_from_hub"] == [BASE]
    assert len(meta["short_description"]) <= 60 and meta["title"]


def test_the_readme_front_matter_is_space_card_data_and_keeps_a_title_yaml_would_misread():
    from huggingface_hub import SpaceCard

    look = SpaceLook(title="Arena: v2 #1 - 'quoted'")
    settings = SpaceSettings(adapters=(TERSE,), votes_repo="tester/votes")
    card = SpaceCard(render_readme(settings, look))
    assert card.data.to_dict() == space_card_data(settings, look).to_dict()
    assert card.data.title == look.title and card.data.models == [BASE, TERSE]
    assert card.data.datasets == ["tester/votes"] and card.text.startswith(f"\n# {look.title}\n")


def test_deploy_settings_are_checked():
    with pytest.raises(ConfigError, match="at least one adapter"):
        settings_for_deploy(BASE, [])
    with pytest.raises(ConfigError, match="Allowlist entry 'adapters'"):
        settings_for_deploy(BASE, ["adapters"])
    with pytest.raises(ConfigError, match="downloads its base from the Hub"):
        settings_for_deploy("./local-phi3", [COMPASS])
    with pytest.raises(ConfigError, match="--space-id"):
        deploy("spaces", settings_for_deploy(BASE, [COMPASS]))


def test_card_section_is_added_once_and_replaced_on_redeploy():
    card = "---\nlibrary_name: peft\n---\n# My adapter\n\nTrained on chats.\n"
    once = with_card_section(card, "me/arena")
    assert once.startswith(card.rstrip("\n")) and "spaces/me/arena" in once
    twice = with_card_section(with_card_section(once, "me/arena-v2"), "me/arena-v2")
    assert twice.count(CARD_START) == 1 and "me/arena-v2" in twice and "spaces/me/arena)" not in twice
    assert twice.startswith(card.rstrip("\n"))


@pytest.fixture
def deployed(hub, trained_adapters, tmp_path):
    """A Space deployed to the local Hub; the terse adapter already had a card, alice's adapter is not ours."""
    from huggingface_hub import HfApi
    from space_testing import ADAPTER_PATTERNS, for_base, push_adapter

    push_adapter(COMPASS, {"main": for_base(trained_adapters.compass, BASE, tmp_path / "compass")})
    push_adapter(TERSE, {"main": for_base(trained_adapters.terse, BASE, tmp_path / "terse")})
    api = HfApi()
    api.upload_file(
        path_or_fileobj=b"---\nlibrary_name: peft\n---\n# Terse\n\nAnswers briefly.\n",
        path_in_repo="README.md",
        repo_id=TERSE,
    )
    alice = hub.create_user("alice")
    HfApi(token=alice).create_repo("alice/public-lora", exist_ok=True)
    HfApi(token=alice).upload_folder(
        folder_path=str(tmp_path / "terse"), repo_id="alice/public-lora", allow_patterns=ADAPTER_PATTERNS
    )
    space_id = "tester/space-arena"
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", exist_ok=True)
    stale = "phi3_lora_hub/removed_module.py"
    api.upload_file(path_or_fileobj=b"# stale\n", path_in_repo=stale, repo_id=space_id, repo_type="space")
    settings = settings_for_deploy(
        BASE, [COMPASS, TERSE, "alice/public-lora"], allowlist=["tester/*"], votes_repo="tester/space-votes"
    )
    result = deploy(space_id, settings, token=FAKE_TOKEN)
    return api, space_id, result


def test_deploy_creates_the_space_with_the_app_and_only_the_modules_it_runs(deployed):
    from huggingface_hub import hf_hub_download

    api, space_id, result = deployed
    info = api.repo_info(space_id, repo_type="space")
    assert info.sdk == "gradio"
    files = set(api.list_repo_files(space_id, repo_type="space"))
    assert {"app.py", "README.md", "requirements.txt", "space_config.json"} <= files
    package = {f for f in files if f.startswith("phi3_lora_hub/")}
    for module in ("__init__.py", "space/runtime.py", "space/registry.py", "arena/votes.py", "phi3_format.py"):
        assert f"phi3_lora_hub/{module}" in package
    assert "phi3_lora_hub/removed_module.py" not in files  # an earlier deploy's leftovers are removed
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert files - {".gitattributes"} == set(result.files) and result.url.endswith(f"/spaces/{space_id}")
    assert package == set(space_modules(ROOT / "space_app" / "app.py"))
    for left_out in ("local_hub/server.py", "training/trainer.py", "recipe.py", "space/deploy.py", "cli/main.py"):
        assert (ROOT / "phi3_lora_hub" / left_out).is_file() and f"phi3_lora_hub/{left_out}" not in files
    assert not any(name.startswith(("phi3_lora_hub/local_hub", "phi3_lora_hub/space_app")) for name in files)
    total = sum(Path(hf_hub_download(space_id, name, repo_type="space")).stat().st_size for name in result.files)
    assert result.bundle_bytes == total < 400_000
    meta = front_matter(Path(hf_hub_download(space_id, "README.md", repo_type="space")).read_text())
    assert meta["models"] == [BASE, COMPASS, TERSE, "alice/public-lora"]
    assert meta["datasets"] == ["tester/space-votes"] and meta["sdk"] == "gradio"
    config = json.loads(Path(hf_hub_download(space_id, "space_config.json", repo_type="space")).read_text())
    assert config == {
        "PHI3_SPACE_BASE_MODEL": BASE,
        "PHI3_SPACE_ADAPTERS": f"{COMPASS},{TERSE},alice/public-lora",
        "PHI3_SPACE_ALLOWLIST": "tester/*",
        "PHI3_SPACE_VOTES_REPO": "tester/space-votes",
    }
    app = Path(hf_hub_download(space_id, "app.py", repo_type="space")).read_text()
    assert app == (ROOT / "space_app" / "app.py").read_text()
    for name in files:  # no token anywhere in the Space
        text = Path(hf_hub_download(space_id, name, repo_type="space")).read_bytes()
        assert FAKE_TOKEN.encode() not in text


def test_deploy_links_the_adapter_cards_to_the_space(deployed):
    from huggingface_hub import ModelCard

    _, space_id, result = deployed
    assert result.linked_cards == [COMPASS, TERSE]
    assert result.unlinked_cards == {"alice/public-lora": "no write access with this token"}
    compass_card = ModelCard.load(COMPASS)
    assert f"spaces/{space_id}" in compass_card.text and compass_card.data.library_name == "peft"
    terse = ModelCard.load(TERSE).content
    assert terse.count(CARD_START) == 1 and "Answers briefly." in terse
    deploy(space_id, settings_for_deploy(BASE, [TERSE]), token=FAKE_TOKEN)  # redeploy: still one section
    assert ModelCard.load(TERSE).content.count(CARD_START) == 1


def test_deploy_refuses_adapters_the_space_would_refuse_and_creates_nothing(hub, trained_adapters, tmp_path):
    """A wrong base, pickled weights or no adapter at all: every problem is listed, and no Space repo is created,
    no file uploaded, no card touched."""
    from huggingface_hub import HfApi
    from space_testing import for_base, push_adapter

    api = HfApi()
    good = "tester/space-deploy-good"
    push_adapter(good, {"main": for_base(trained_adapters.compass, BASE, tmp_path / "good")})
    other_base = for_base(trained_adapters.compass, "microsoft/Phi-3-medium-4k-instruct", tmp_path / "medium")
    push_adapter("tester/space-deploy-medium", {"main": other_base})
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_bytes((tmp_path / "good" / "adapter_config.json").read_bytes())
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    api.create_repo("tester/space-deploy-pickled", exist_ok=True)
    api.upload_folder(folder_path=str(pickled), repo_id="tester/space-deploy-pickled")
    api.create_repo("tester/space-deploy-empty", exist_ok=True)
    good_commits = [commit.commit_id for commit in api.list_repo_commits(good)]
    space_id = "tester/space-refused"
    adapters = [good, "tester/space-deploy-medium", "tester/space-deploy-pickled", "tester/space-deploy-empty"]
    with pytest.raises(ConfigError) as refused:
        deploy(space_id, settings_for_deploy(BASE, adapters), token=FAKE_TOKEN)
    message = str(refused.value)
    assert "nothing was created" in message and good not in message
    assert "`tester/space-deploy-medium` at `main` was trained on `microsoft/Phi-3-medium-4k-instruct`" in message
    assert "`tester/space-deploy-pickled` at `main` has its weights only as a pickle (adapter_model.bin)" in message
    assert "`tester/space-deploy-empty` at `main` is not a PEFT adapter" in message
    assert not api.repo_exists(space_id, repo_type="space")
    assert [commit.commit_id for commit in api.list_repo_commits(good)] == good_commits  # no card link either


def test_deploy_checks_adapters_against_the_base_aliases(hub, trained_adapters, tmp_path):
    """An adapter naming a mirror of the base deploys when that mirror is one of the Space's base aliases."""
    from huggingface_hub import HfApi
    from space_testing import for_base, push_adapter

    mirror = "mirror/phi-3-mini"
    push_adapter("tester/space-deploy-mirror", {"main": for_base(trained_adapters.terse, mirror, tmp_path / "m")})
    settings = settings_for_deploy(BASE, ["tester/space-deploy-mirror"])
    with pytest.raises(ConfigError, match="was trained on `mirror/phi-3-mini`"):
        deploy("tester/space-mirror", settings, token=FAKE_TOKEN, link_cards=False)
    aliased = settings_for_deploy(BASE, ["tester/space-deploy-mirror"], extra={"PHI3_SPACE_BASE_ALIASES": mirror})
    result = deploy("tester/space-mirror", aliased, token=FAKE_TOKEN, link_cards=False)
    assert "app.py" in result.files and HfApi().repo_exists("tester/space-mirror", repo_type="space")


@pytest.mark.usefixtures("hub_adapters", "local_hub")
def test_the_built_space_runs_on_its_vendored_package(tiny_model_dir, tmp_path):
    """The Space folder alone (no checkout on the path) starts and answers, its variables overriding the file."""
    from gradio_client import Client

    folder = tmp_path / "space"
    files = build_space(folder, settings_for_deploy(BASE, ["tester/space-compass"]))
    assert not any(name.startswith("phi3_lora_hub/local_hub") for name in files)  # no local Hub server shipped
    port = free_port()
    env = subprocess_env(
        HF_HUB_OFFLINE="0",
        PYTHONPATH="",
        GRADIO_SERVER_PORT=str(port),
        PHI3_SPACE_BASE_MODEL=str(tiny_model_dir),
        PHI3_SPACE_DTYPE="float32",
        PHI3_SPACE_DATA_DIR=str(tmp_path / "data"),
        OMP_NUM_THREADS="1",
    )
    where = subprocess.run(
        [sys.executable, "-c", "import phi3_lora_hub; print(phi3_lora_hub.__file__)"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).resolve().is_relative_to(folder.resolve())
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_app(url, process)
        client = Client(url, verbose=False)
        picks = ("base", None, "tester/space-compass", "main")
        chat_a, chat_b, *_ = client.predict(QUESTION, *picks, "", 0, 1, 16, 0, False, api_name="/send")
        assert answers(chat_a)[0] and answers(chat_b)[0].startswith("Peru")
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


# Imported by phi3_lora_hub modules the app loads, but only on paths the Space never takes.
NOT_USED_BY_THE_SPACE = {
    "bitsandbytes": "QLoRA training (model.quantization)",
    "flash_attn": "FlashAttention probe (hardware)",
}


def test_requirements_cover_everything_the_app_imports():
    """Every package imported by app.py and the phi3_lora_hub modules it loads is in requirements.txt, or is
    required by a listed package or by Gradio (installed by the Space from sdk_version)."""
    import ast
    import re
    from importlib import metadata

    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / 'space_app' / 'app.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() if n.startswith('phi3_lora_hub'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, check=True)
    sources = [ROOT / "space_app" / "app.py", *map(Path, json.loads(run.stdout.splitlines()[-1]))]
    assert any(path.name == "runtime.py" for path in sources)
    imported = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    listed = []
    for line in (ROOT / "space_app" / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            listed.append(re.split(r"[<>=!~\[; ]", line)[0])
    allowed, todo = set(), [*listed, "gradio"]
    while todo:  # the listed packages and everything they require
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in allowed:
            continue
        allowed.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [re.split(r"[<>=!~\[; (]", r)[0] for r in requirements if "extra ==" not in r]
    owners = metadata.packages_distributions()
    missing = {}
    for module in sorted(imported - set(sys.stdlib_module_names) - {"phi3_lora_hub", "__future__"}):
        if module in NOT_USED_BY_THE_SPACE or module == "spaces":  # `spaces` exists on Spaces only
            continue
        distributions = owners.get(module)
        assert distributions, f"{module} is imported but not installed here"
        if not any(re.sub(r"[-_.]+", "-", d).lower() in allowed for d in distributions):
            missing[module] = distributions
    assert not missing, f"imported but not covered by space_app/requirements.txt: {missing}"
