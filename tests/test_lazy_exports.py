"""The packages with lazy exports: importing them stays cheap, and every exported name resolves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from phi3_testing import subprocess_env

PACKAGES = ["phi3_lora_hub", "phi3_lora_hub.hub", "phi3_lora_hub.loralib_backend"]


def test_importing_the_packages_imports_no_heavy_dependency():
    """In a fresh interpreter (this one has torch already): no torch, transformers or Hub client after import."""
    code = f"import json, sys; import {', '.join(PACKAGES)}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint({"torch", "transformers", "trl", "peft", "huggingface_hub", "loralib"})


@pytest.mark.parametrize("package", PACKAGES)
def test_every_lazy_export_resolves_to_what_its_submodule_defines(package):
    import importlib

    module = importlib.import_module(package)
    assert set(module._EXPORTS) <= set(module.__all__)
    for name, submodule in module._EXPORTS.items():
        value = getattr(module, name)
        assert value.__name__ == name and value.__module__ == f"{package}.{submodule}"


@pytest.mark.parametrize("package", PACKAGES)
def test_an_unknown_name_is_an_attribute_error_naming_the_package(package):
    import importlib

    module, typo = importlib.import_module(package), "Phi3LoraRecipee"
    with pytest.raises(AttributeError, match=rf"module '{package}' has no attribute '{typo}'"):
        getattr(module, typo)


def test_the_hub_push_callback_is_exported_from_the_package():
    """Users of a plain Trainer/SFTTrainer import the callback from the package, as the README shows."""
    from phi3_lora_hub import HubPushCallback
    from phi3_lora_hub.hub.push_callback import HubPushCallback as defined

    assert HubPushCallback is defined
