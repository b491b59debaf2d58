"""The wheel's package list covers the source tree, and the templates and the Space app ship without links."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_folder_of_the_package_holding_python_files_is_listed():
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "phi3_lora_hub").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    mapped = set(SETUPTOOLS["package-dir"])
    assert folders | mapped == set(SETUPTOOLS["packages"])


def test_the_templates_and_the_space_app_are_top_level_folders_shipped_as_packages_without_links():
    for package, folder in SETUPTOOLS["package-dir"].items():
        source = ROOT / folder
        assert source.is_dir() and not source.is_symlink()
        assert not (ROOT / Path(*package.split("."))).exists(), f"{package} must not also exist inside the package"
        installed = Path(str(resources.files(package)))
        assert installed.resolve() == source.resolve()
    assert not [path for path in (ROOT / "phi3_lora_hub").rglob("*") if path.is_symlink()]
