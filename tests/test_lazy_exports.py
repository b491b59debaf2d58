"""The package façade exports lazily, once: importing it stays cheap, and every exported name resolves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from phi3_testing import subprocess_env

PACKAGES = ["phi3_lora_hub", "phi3_lora_hub.hub", "phi3_lora_hub.loralib_backend"]
FACADE = "phi3_lora_hub"


def test_importing_the_packages_imports_no_heavy_dependency():
    """In a fresh interpreter (this one has torch already): no torch, transformers or Hub client after import."""
    code = f"import json, sys; import {', '.join(PACKAGES)}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint({"torch", "transformers", "trl", "peft", "huggingface_hub", "loralib"})


def test_every_lazy_export_resolves_to_what_its_submodule_defines():
    import importlib

    module = importlib.import_module(FACADE)
    assert set(module._EXPORTS) <= set(module.__all__)
    for name, submodule in module._EXPORTS.items():
        value = getattr(module, name)
        assert value.__name__ == name and value.__module__ == f"{FACADE}.{submodule}"


def test_an_unknown_name_is_an_attribute_error_naming_the_package():
    import importlib

    module, typo = importlib.import_module(FACADE), "Phi3LoraRecipee"
    with pytest.raises(AttributeError, match=rf"module '{FACADE}' has no attribute '{typo}'"):
        getattr(module, typo)


def test_only_the_package_facade_loads_lazily():
    """Subpackages export nothing through ``__getattr__``: their modules are imported where they are used."""
    from pathlib import Path

    import phi3_lora_hub

    root = Path(phi3_lora_hub.__file__).parent
    lazy = [path for path in root.rglob("__init__.py") if path.parent != root and "lazy_exports" in path.read_text()]
    assert not lazy


def test_the_hub_push_callback_is_exported_from_the_package():
    """Users of a plain Trainer/SFTTrainer import the callback from the package, as the README shows."""
    from phi3_lora_hub import HubPushCallback
    from phi3_lora_hub.callbacks.hub_push import HubPushCallback as defined

    assert HubPushCallback is defined
