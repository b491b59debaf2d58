"""Build the Space repository and push it: ``phi3-lora-hub space deploy``.

A Space built here holds:

- ``app.py`` and ``requirements.txt`` from ``space_app/``;
- ``README.md``: front matter from ``huggingface_hub.SpaceCardData`` (``sdk: gradio``, the tested ``sdk_version``,
  ``models:`` listing the base and the adapters so the Hub links them to the Space), the body rendered from
  ``model_card_templates/space_readme.md.j2``;
- ``space_config.json``: the deploy's settings (base model, adapters, allowlist, votes dataset; never a token);
- ``phi3_lora_hub/``: the modules of this package that the app imports, directly or through each other (found by
  reading their ``import`` statements, :func:`space_modules`), vendored; nothing else (no training code, no local
  Hub server). A Space installs ``requirements.txt`` before the rest of the repository is copied in, so a wheel
  shipped in the repo could not be installed from it; a package folder next to ``app.py`` is importable because
  the app runs from the repository root.

The app and the README template ship inside the installed package (``phi3_lora_hub/space_app``,
``phi3_lora_hub/model_card_templates``), so ``space run`` and ``space deploy`` work from a wheel as from a checkout.

After the upload, each adapter's model card gets (or has refreshed) a short section linking to the Space.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from phi3_lora_hub.cards.render import templates_dir
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.space.compat import BaseSignature
from phi3_lora_hub.space.hub_adapters import MB, AdapterSource
from phi3_lora_hub.space.refusal import Refusal
from phi3_lora_hub.space.repo_policy import AllowList, repo_id_problem
from phi3_lora_hub.space.settings import CONFIG_FILE, SpaceSettings

logger = logging.getLogger(__name__)

GRADIO_VERSION = "6.31.0"
"""The Gradio the app is tested with; Spaces install it from ``sdk_version`` (not from requirements.txt)."""
PYTHON_VERSION = "3.12"
TEMPLATE_NAME = "space_readme.md.j2"
PACKAGE = "phi3_lora_hub"
CARD_START = "<!-- phi3-lora-hub:space -->"
CARD_END = "<!-- /phi3-lora-hub:space -->"


@dataclass(frozen=True)
class SpaceLook:
    """How the Space presents itself (README front matter)."""

    title: str = "Phi-3 LoRA side by side"
    emoji: str = "⚖️"
    color_from: str = "indigo"
    color_to: str = "blue"
    short_description: str = "Chat with two Phi-3 LoRA adapters side by side and vote"
    suggested_hardware: str = "t4-small"
    license: str = "mit"


@dataclass
class DeployResult:
    """What a deploy did: the Space's URL and commit, the files it holds, which adapter cards link to it."""

    space_id: str
    url: str
    commit: str | None
    files: list[str]
    bundle_bytes: int = 0
    """Total size of the files uploaded."""
    linked_cards: list[str] = field(default_factory=list)
    unlinked_cards: dict[str, str] = field(default_factory=dict)
    """Adapter repo -> why its card could not be updated (no write access, ...)."""


def package_dir() -> Path:
    """This package's folder (in a checkout or installed): the Space bundle copies its modules from there."""
    return Path(__file__).resolve().parents[1]


def default_app_dir() -> Path:
    """The Space app's folder: the package ``phi3_lora_hub.space_app``, i.e. the checkout's ``space_app/``."""
    return Path(str(resources.files("phi3_lora_hub.space_app")))


def default_template() -> Path:
    return templates_dir() / TEMPLATE_NAME


def _check_sources(app_dir: Path, template: Path) -> None:
    for path in (app_dir / "app.py", app_dir / "requirements.txt", template):
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing. `space run` and `space deploy` read app.py and requirements.txt from --app-dir "
                "(default: the space_app/ folder installed with phi3-lora-hub): pass a folder holding both, or "
                "reinstall phi3-lora-hub."
            )


def space_url(space_id: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/spaces/{space_id}"


def space_card_data(settings: SpaceSettings, look: SpaceLook = SpaceLook()) -> Any:
    """The ``huggingface_hub.SpaceCardData`` (README front matter) of a Space serving ``settings``: ``models`` lists
    the base and the adapters (Hub ids only) so the Hub links them to the Space, and the base is preloaded."""
    from huggingface_hub import SpaceCardData

    models = [repo for repo in (settings.base_model, *settings.adapters) if repo_id_problem(repo) is None]
    return SpaceCardData(
        title=look.title,
        emoji=look.emoji,
        colorFrom=look.color_from,
        colorTo=look.color_to,
        sdk="gradio",
        sdk_version=GRADIO_VERSION,
        python_version=PYTHON_VERSION,
        app_file="app.py",
        pinned=False,
        license=look.license,
        short_description=look.short_description,
        suggested_hardware=look.suggested_hardware,
        startup_duration_timeout="1h",
        models=list(dict.fromkeys(models)) or None,
        preload_from_hub=[settings.base_model] if repo_id_problem(settings.base_model) is None else None,
        datasets=[settings.votes_repo] if settings.votes_repo else None,
        tags=["phi3", "lora", "peft", "phi3-lora-hub"],
    )


def render_readme(settings: SpaceSettings, look: SpaceLook = SpaceLook(), *, template: Path | None = None) -> str:
    """The Space's README.md: the front matter of :func:`space_card_data`, then the template's description of what
    the Space compares (rendered like ``SpaceCard.from_template``, with ``card_data`` the front matter as YAML)."""
    from huggingface_hub import SpaceCard
    from jinja2 import Environment, StrictUndefined

    template = template or default_template()
    data = space_card_data(settings, look)
    environment = Environment(keep_trailing_newline=True, undefined=StrictUndefined, autoescape=False)
    text = environment.from_string(template.read_text(encoding="utf-8")).render(
        card_data=data.to_yaml(), look=look, settings=settings
    )
    return str(SpaceCard(text))


def space_modules(app: Path) -> list[str]:
    """The package's modules ``app`` runs: every ``phi3_lora_hub`` module it imports, then every one those import,
    and so on (imports inside functions included, ``if TYPE_CHECKING:`` blocks left out), with the
    ``__init__.py`` of each package on the way. Paths relative to the package's parent, sorted."""
    root = package_dir().parent
    found: dict[str, Path] = {}
    todo = list(_package_imports(app, "app"))
    while todo:
        name = todo.pop()
        path = _module_path(root, name)
        if path is None or name in found:
            continue
        found[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:end]) for end in range(1, len(parts)))
        todo.extend(_package_imports(path, name))
    return sorted({str(path.relative_to(root)) for path in found.values()})


def _module_path(root: Path, name: str) -> Path | None:
    """The file of module ``name`` under ``root``, or ``None`` when ``name`` is not a module (a function, a class)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_imports(path: Path, module: str) -> set[str]:
    """Names this package's modules ``path`` (module ``module``) may import: ``a.b`` for ``import a.b`` and both
    ``a`` and ``a.b`` for ``from a import b`` (``b`` may be a module or a name in ``a``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                parent = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(parent)
            names.update(f"{parent}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in names if name.split(".")[0] == PACKAGE}


def build_space(
    target: str | Path,
    settings: SpaceSettings,
    look: SpaceLook = SpaceLook(),
    *,
    app_dir: Path | None = None,
    template: Path | None = None,
) -> list[str]:
    """Write the Space repository's files into ``target`` (created); returns their paths, sorted."""
    app_dir = app_dir or default_app_dir()
    template = template or default_template()
    _check_sources(app_dir, template)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(app_dir / "app.py", target / "app.py")
    shutil.copyfile(app_dir / "requirements.txt", target / "requirements.txt")
    (target / "README.md").write_text(render_readme(settings, look, template=template), encoding="utf-8")
    config = settings.to_environment()
    (target / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for relative in space_modules(app_dir / "app.py"):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package_dir().parent / relative, destination)
    return sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())


def bundle_bytes(folder: Path, files: Sequence[str]) -> int:
    """Total size of ``files`` (paths relative to ``folder``), as :func:`build_space` returns them."""
    return sum((folder / name).stat().st_size for name in files)


def check_adapters(settings: SpaceSettings, *, token: str | None = None) -> dict[str, str]:
    """Check each offered adapter at ``main`` on the Hub as the Space will when it loads it: safetensors weights
    (no pickle-only repo), within the size cap, a plain LoRA config whose ``base_model_name_or_path`` is the
    Space's base (or one of its aliases). Only ``adapter_config.json`` is downloaded, into a temporary folder.

    Returns repo -> commit; ``ConfigError`` listing every adapter the Space would refuse, and why.
    """

    base = BaseSignature.of_names([settings.base_model, *settings.base_aliases])
    commits, problems = {}, []
    with tempfile.TemporaryDirectory(prefix="phi3-space-check-") as cache:
        source = AdapterSource(
            base,
            AllowList.of([*settings.adapters, *settings.allowlist]),
            token=token,
            max_bytes=int(settings.max_adapter_mb * MB),
            cache_dir=cache,
        )
        for repo_id in settings.adapters:
            try:
                commits[repo_id] = source.check_remote(repo_id)
            except Refusal as refusal:
                problems.append(f"- {refusal}")
    if problems:
        raise ConfigError(
            "The Space would refuse these adapters, so nothing was created or uploaded:\n"
            + "\n".join(problems)
            + "\nFix them (or leave them out of --adapters), then deploy again."
        )
    return commits


def deploy(
    space_id: str,
    settings: SpaceSettings,
    look: SpaceLook = SpaceLook(),
    *,
    token: str | None = None,
    private: bool = False,
    link_cards: bool = True,
    app_dir: Path | None = None,
    template: Path | None = None,
) -> DeployResult:
    """Create or update the Space ``space_id`` (sdk gradio) and link the adapters' cards to it.

    ``token`` defaults to the usual ``huggingface_hub`` token (``HF_TOKEN`` or the login). Files of an earlier
    vendored package that no longer exist are removed from the Space.
    """
    from huggingface_hub import HfApi, get_token

    problem = repo_id_problem(space_id)
    if problem:
        raise ConfigError(f"--space-id {space_id!r} is not a repo id ({problem}): write namespace/name.")
    if settings.token:
        raise ConfigError("Deploy never writes a token into the Space: leave it out of the settings.")
    api = HfApi(token=token)
    check_adapters(settings, token=api.token or get_token())
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="phi3-space-") as folder:
        files = build_space(folder, settings, look, app_dir=app_dir, template=template)
        size = bundle_bytes(Path(folder), files)
        commit = api.upload_folder(
            folder_path=folder,
            repo_id=space_id,
            repo_type="space",
            commit_message="Deploy the phi3-lora-hub side-by-side Space",
            delete_patterns=[f"{PACKAGE}/**"],
        )
    result = DeployResult(space_id, space_url(space_id), getattr(commit, "oid", None), files, size)
    if link_cards:
        for repo_id in settings.adapters:
            try:
                link_card(api, repo_id, space_id, base_model=settings.base_model)
                result.linked_cards.append(repo_id)
            except Exception as error:  # one adapter the user cannot write to must not fail the deploy
                result.unlinked_cards[repo_id] = _reason(error)
    return result


def card_section(space_id: str) -> str:
    """The model-card section pointing at the Space (between markers, so redeploys replace it)."""
    return (
        f"{CARD_START}\n## Try it side by side\n\n"
        f"Chat with this adapter next to the base model or its other checkpoints, and vote, in the Space "
        f"[{space_id}]({space_url(space_id)}).\n{CARD_END}\n"
    )


def with_card_section(card_text: str, space_id: str) -> str:
    """``card_text`` with the Space section added at the end, or replacing the one already there."""
    section = card_section(space_id)
    start, end = card_text.find(CARD_START), card_text.find(CARD_END)
    if start != -1 and end > start:
        return card_text[:start] + section + card_text[end + len(CARD_END) :].lstrip("\n")
    return card_text.rstrip("\n") + "\n\n" + section


def link_card(api, repo_id: str, space_id: str, *, base_model: str) -> None:
    """Add the Space section to ``repo_id``'s README (a minimal card is written when it has none)."""
    from huggingface_hub import ModelCard
    from huggingface_hub.errors import EntryNotFoundError

    try:
        card = ModelCard.load(repo_id, token=api.token)
        text = str(card.content)
    except EntryNotFoundError:
        metadata = {"library_name": "peft", "tags": ["phi3", "lora", "phi3-lora-hub"]}
        if repo_id_problem(base_model) is None:
            metadata["base_model"] = base_model
        header = "\n".join(f"{key}: {json.dumps(value)}" for key, value in metadata.items())
        text = f"---\n{header}\n---\n\n# {repo_id}\n\nA LoRA adapter for Phi-3.\n"
    ModelCard(with_card_section(text, space_id)).push_to_hub(
        repo_id, token=api.token, commit_message=f"Link the Space {space_id}"
    )


def _reason(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in (401, 403):
        return "no write access with this token"
    if status == 404:
        return "repository not found"
    return type(error).__name__


def settings_for_deploy(
    base_model: str,
    adapters: Sequence[str],
    *,
    allowlist: Sequence[str] = (),
    votes_repo: str | None = None,
    extra: dict[str, str] | None = None,
) -> SpaceSettings:
    """Settings for a deployed Space (no token: the Space reads its own ``HF_TOKEN`` secret)."""
    environ = {
        "PHI3_SPACE_BASE_MODEL": base_model,
        "PHI3_SPACE_ADAPTERS": ",".join(adapters),
        "PHI3_SPACE_ALLOWLIST": ",".join(allowlist),
        "PHI3_SPACE_VOTES_REPO": votes_repo or "",
        **(extra or {}),
    }
    settings = SpaceSettings.from_env(environ)
    if not settings.adapters:
        raise ConfigError("--adapters: name at least one adapter repo (namespace/name) for the Space to offer.")
    AllowList.of([*settings.adapters, *settings.allowlist])  # ConfigError on a malformed entry
    if repo_id_problem(settings.base_model) is not None:
        raise ConfigError(
            f"--base-model {settings.base_model!r} is not a Hub repo id: a Space downloads its base from the Hub."
        )
    return settings
