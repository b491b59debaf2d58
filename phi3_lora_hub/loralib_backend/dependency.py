"""Lazy import of the optional ``loralib`` package, with an error that says how to install it."""

from __future__ import annotations

from types import ModuleType

from phi3_lora_hub.errors import ConfigError

INSTALL_HINT = "pip install 'phi3-lora-hub[loralib]'"


def require_loralib() -> ModuleType:
    """Return the ``loralib`` module; raise ``ConfigError`` with the install command when it is missing."""
    try:
        import loralib
    except ImportError as error:
        raise ConfigError(
            f"The loralib backend needs Microsoft's loralib package, which is not installed: run `{INSTALL_HINT}` "
            "(or set lora backend='peft')."
        ) from error
    return loralib


def loralib_version() -> str | None:
    """The installed loralib version, or ``None`` when unknown."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loralib")
    except PackageNotFoundError:
        return None
