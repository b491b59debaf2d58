"""Which models to evaluate or compare, and loading them so they share one base model in memory.

A model is given as ``base`` (the base model alone), a local adapter directory, or a Hub adapter repo
``namespace/name[@revision]`` (downloaded with ``huggingface_hub.snapshot_download`` and pinned to the commit it
resolved to). Adapters are loaded onto one base model as named PEFT adapters and switched between, so
comparing A with B costs one base model of memory, and base answers come from the same weights with the
adapters disabled.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from peft import PeftModel

from phi3_lora_hub.errors import ConfigError, ModelError
from phi3_lora_hub.hub.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from phi3_lora_hub.local_paths import looks_local, missing_directory_message
from phi3_lora_hub.model.adapters import read_adapter_config
from phi3_lora_hub.model.identity import BASE, ModelRef
from phi3_lora_hub.model.loading import ADAPTER_PATH_HINT, load_for_inference

logger = logging.getLogger(__name__)

_SHA = re.compile(r"[0-9a-f]{40}")
_REPO_ID = re.compile(r"[\w\-.]{1,96}/[\w\-.]{1,96}")
# Files an adapter directory needs (with its tokenizer and card); model weights of a full checkpoint are never
# downloaded by mistake.
ADAPTER_FILES = [ADAPTER_CONFIG, ADAPTER_WEIGHTS, "*.json", "*.model", "*.txt", "*.yaml", "*.md"]


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user named it: ``base``, a local directory, or a Hub repo at an optional revision."""

    kind: str
    """``base``, ``local`` or ``hub``."""
    location: str | None = None
    """The directory (local) or repo id (hub); ``None`` for the base model."""
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Parse ``base``, an existing directory, or ``namespace/name[@revision]``; ``ConfigError`` otherwise."""
        text = text.strip()
        if text == BASE:
            return cls("base")
        path = Path(text).expanduser()
        if path.is_dir():
            return cls("local", str(path.resolve()))
        if looks_local(text):  # e.g. a typo in an adapter path: say so, not "no such Hub repo"
            raise ConfigError(missing_directory_message("Adapter", text, ADAPTER_CONFIG, ADAPTER_PATH_HINT))
        repo, _, revision = text.partition("@")
        if _REPO_ID.fullmatch(repo) and not repo.startswith((".", "/", "~")):
            return cls("hub", repo, revision or None)
        raise ConfigError(
            f"{text!r} is neither 'base', an existing adapter directory, nor a Hub repo id 'namespace/name[@revision]'."
        )

    def __str__(self) -> str:
        if self.kind == "base":
            return BASE
        return f"{self.location}@{self.revision}" if self.revision else str(self.location)


@dataclass(frozen=True)
class ResolvedAdapter:
    """An adapter found on disk: its directory, the commit it came from (Hub) and the base it was trained on."""

    spec: ModelSpec
    directory: Path
    commit: str | None
    base_model: str | None

    @property
    def ref(self) -> ModelRef:
        """How votes and reports name it: the repo id at its commit, or the local directory."""
        if self.spec.kind == "hub":
            return ModelRef(str(self.spec.location), self.commit or self.spec.revision)
        return ModelRef(str(self.directory))


def resolve_adapter(spec: ModelSpec, *, token: str | bool | None = None) -> ResolvedAdapter:
    """Find the adapter of ``spec`` on disk, downloading a Hub adapter (adapter files only) when needed."""
    if spec.kind == "base":
        raise ValueError("the base model has no adapter to resolve")
    commit = None
    if spec.kind == "hub":
        directory, commit = _download(str(spec.location), spec.revision, token)
    else:
        directory = Path(str(spec.location))
    config = read_adapter_config(directory)  # ModelError unless a LoRA adapter for a causal LM
    return ResolvedAdapter(spec, directory, commit, config.get("base_model_name_or_path"))


def _download(repo_id: str, revision: str | None, token: str | bool | None) -> tuple[Path, str | None]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=ADAPTER_FILES, token=token))
    except RevisionNotFoundError:
        raise ModelError(f"{repo_id} has no revision {revision!r}: use a branch, tag or commit of that repo.") from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"The Hub repo {repo_id} does not exist or you cannot read it: check the id, and set HF_TOKEN "
            "for a private repo."
        ) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        raise ModelError(
            f"Cannot download {where}: the Hub is unreachable or HF_HUB_OFFLINE is set, and it is not in the "
            f"local cache ({error}). Connect, or pass a local adapter directory."
        ) from None
    commit = folder.name if _SHA.fullmatch(folder.name) else None
    return folder, commit


def common_base(adapters: Sequence[ResolvedAdapter], override: str | None) -> str:
    """The base model every adapter was trained on, or ``override``; ``ConfigError`` when it is ambiguous."""
    if override:
        return override
    bases = {adapter.base_model for adapter in adapters if adapter.base_model}
    if len(bases) == 1:
        return bases.pop()
    if not bases:
        raise ConfigError("Cannot tell which base model to use: pass --base-model (a Hub id or a local directory).")
    raise ConfigError(
        f"The adapters were trained on different base models ({', '.join(sorted(bases))}); they can only be "
        "compared on one base: pass --base-model to choose it."
    )


def load_with_adapters(
    base_model: str, adapters: Mapping[str, ResolvedAdapter], *, revision: str | None = None
) -> tuple[object, object]:
    """Load ``base_model`` once and every adapter onto it under its key; returns ``(model, tokenizer)``.

    With no adapters the plain base model is returned. The tokenizer is the base model's, set for generation.
    """
    model, tokenizer = load_for_inference(base_model, revision=revision)
    if not adapters:
        return model, tokenizer
    first, *others = adapters.items()
    model = PeftModel.from_pretrained(model, str(first[1].directory), adapter_name=first[0])
    for name, adapter in others:
        model.load_adapter(str(adapter.directory), adapter_name=name)
    model.eval()
    return model, tokenizer


@contextlib.contextmanager
def active_adapter(model, name: str | None) -> Iterator[None]:
    """Run the block with adapter ``name`` active, or with every adapter disabled (the base) when ``None``.

    Which parameters require gradients is restored afterwards: PEFT's ``set_adapter`` and the exit of
    ``disable_adapter()`` both set ``requires_grad=True`` on the active adapter (peft 0.21), which would silently
    make a frozen inference model trainable.
    """
    is_peft = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
    if name is not None and (not is_peft or name not in model.peft_config):
        raise ValueError(f"the model has no adapter named {name!r}")
    trainable = {param_name: p.requires_grad for param_name, p in model.named_parameters()}
    try:
        if name is None:
            with model.disable_adapter() if is_peft else contextlib.nullcontext():
                yield
        elif model.active_adapter == name:
            yield
        else:
            previous = model.active_adapter
            model.set_adapter(name)
            try:
                yield
            finally:
                model.set_adapter(previous)
    finally:
        for param_name, param in model.named_parameters():
            param.requires_grad_(trainable.get(param_name, False))
