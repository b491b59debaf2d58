"""loralib checkpoints on disk, and converting checkpoint directories to and from PEFT adapter directories.

A loralib checkpoint directory holds ``loralib_state_dict.safetensors`` (``lora.lora_state_dict(model)``; a
``.pt`` written with ``torch.save`` as in the loralib README is read too) and ``loralib_config.json`` (the
:class:`LoralibSpec` plus the base model). A directory written by :func:`save_adapter` or
:func:`convert_loralib_dir` is *also* a standard PEFT adapter (``adapter_model.safetensors`` +
``adapter_config.json``); its ``loralib_config.json`` records that it was trained with loralib and on which q/k/v
slices (:func:`read_loralib_record`), and the same record is in the safetensors metadata under ``loralib``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.loralib_backend.conversion import PeftAdapter, loralib_to_peft, peft_to_loralib
from phi3_lora_hub.loralib_backend.dependency import loralib_version, require_loralib
from phi3_lora_hub.loralib_backend.spec import LoralibSpec
from phi3_lora_hub.run_file_names import LORALIB_CONFIG, LORALIB_STATE_DICT

LORALIB_WEIGHTS_NAME = LORALIB_STATE_DICT
LORALIB_TORCH_WEIGHTS_NAMES = ("loralib_state_dict.pt", "lora.pt", "ckpt_lora.pt")
PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_TORCH_WEIGHTS_NAME = "adapter_model.bin"
PEFT_CONFIG_NAME = "adapter_config.json"
RECORD_FORMAT = "phi3-lora-hub/loralib@1"


@dataclass(frozen=True)
class LoralibRecord:
    """What ``loralib_config.json`` says: how the model was patched, and on top of which base."""

    spec: LoralibSpec
    base_model_name_or_path: str | None = None
    revision: str | None = None
    loralib_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "trained_with": "loralib",
            "loralib_version": self.loralib_version,
            "base_model_name_or_path": self.base_model_name_or_path,
            "revision": self.revision,
            "loralib_weights": LORALIB_WEIGHTS_NAME,
            **self.spec.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoralibRecord:
        spec_keys = set(LoralibSpec.__dataclass_fields__)
        return cls(
            spec=LoralibSpec.from_dict({key: value for key, value in data.items() if key in spec_keys}),
            base_model_name_or_path=data.get("base_model_name_or_path"),
            revision=data.get("revision"),
            loralib_version=data.get("loralib_version"),
        )

    def describe(self) -> str:
        """One line for a model card, e.g. ``trained with loralib 0.1.2: MergedLinear on qkv_proj (q, v), ...``."""
        spec = self.spec
        parts = []
        for target in spec.target_modules:
            if target.endswith("qkv_proj") and not spec.fused_qkv:
                parts.append(f"MergedLinear on {target} ({', '.join(spec.qkv_slices)})")
            elif target == "embed_tokens":
                parts.append(f"Embedding on {target}")
            else:
                parts.append(f"Linear on {target}")
        version = f" {self.loralib_version}" if self.loralib_version else ""
        return f"trained with loralib{version}: {'; '.join(parts)}; r={spec.r}, lora_alpha={spec.lora_alpha}"


def lora_state_dict(model: Any, bias: str = "none") -> dict[str, Any]:
    """``lora.lora_state_dict(model, bias)`` as contiguous CPU copies, safe to save while training goes on.

    Merging never changes the LoRA tensors, so this reads them as they are: unmerging just to read them would
    move the pretrained weights by an ulp (see :mod:`.merging`).
    """
    lora = require_loralib()
    state = lora.lora_state_dict(model, bias=bias)
    return {key: tensor.detach().to("cpu", copy=True).contiguous() for key, tensor in state.items()}


def save_loralib_checkpoint(state_dict: dict[str, Any], record: LoralibRecord, directory: str | Path) -> Path:
    """Write ``loralib_state_dict.safetensors`` and ``loralib_config.json`` to ``directory``; return it."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record_json = json.dumps(record.to_dict(), indent=2)
    save_file(state_dict, str(directory / LORALIB_WEIGHTS_NAME), metadata={"format": "pt", "loralib": record_json})
    (directory / LORALIB_CONFIG).write_text(record_json + "\n", encoding="utf-8")
    return directory


def read_loralib_record(directory: str | Path) -> LoralibRecord | None:
    """The loralib record of a checkpoint or converted adapter directory; ``None`` when it was not made with loralib.

    A Hub push callback or model card uses this to say "trained with loralib" and name the q/k/v slices.
    """
    path = Path(directory) / LORALIB_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from None
    return LoralibRecord.from_dict(data)


def read_loralib_checkpoint(
    directory: str | Path, *, spec: LoralibSpec | None = None, weights: str | Path | None = None
) -> tuple[dict[str, Any], LoralibRecord]:
    """Read a loralib checkpoint directory: ``(state_dict, record)``.

    ``weights`` overrides the state dict file (``.safetensors``, or ``.pt``/``.bin`` read with
    ``torch.load(weights_only=True)``). ``spec`` is required when the directory has no ``loralib_config.json``
    (a hand-made loralib checkpoint): loralib state dicts do not record ``lora_alpha`` or the q/k/v slices.
    """
    directory = Path(directory)
    record = read_loralib_record(directory)
    if spec is not None:
        record = LoralibRecord(spec, *(() if record is None else (record.base_model_name_or_path, record.revision)))
    if record is None:
        raise ConfigError(
            f"{directory} has no {LORALIB_CONFIG}: pass spec=LoralibSpec(r=..., lora_alpha=..., "
            "qkv_slices=[...], target_modules=[...]) as used in training (a loralib state dict does not record them)."
        )
    path = Path(weights) if weights is not None else _find_weights(directory)
    return load_state_dict_file(path), record


def _find_weights(directory: Path) -> Path:
    for name in (LORALIB_WEIGHTS_NAME, *LORALIB_TORCH_WEIGHTS_NAMES):
        if (directory / name).is_file():
            return directory / name
    raise ConfigError(
        f"{directory} holds no loralib state dict ({LORALIB_WEIGHTS_NAME} or one of {LORALIB_TORCH_WEIGHTS_NAMES}); "
        "pass weights= with its path."
    )


def load_state_dict_file(path: str | Path) -> dict[str, Any]:
    """Tensors from a ``.safetensors`` file, or a ``torch.save`` file read with ``weights_only=True`` (no code)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"State dict file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state dict.")
    return state


def write_peft_adapter(adapter: PeftAdapter, directory: str | Path) -> Path:
    """Write a standard PEFT adapter: ``adapter_model.safetensors`` + ``adapter_config.json`` (``peft`` loads it)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    adapter.lora_config().save_pretrained(str(directory))
    metadata = {"format": "pt"}
    if adapter.metadata:
        metadata["loralib"] = json.dumps(adapter.metadata)
    tensors = {key: tensor.contiguous() for key, tensor in adapter.state_dict.items()}
    save_file(tensors, str(directory / PEFT_WEIGHTS_NAME), metadata=metadata)
    return directory


def read_peft_adapter(directory: str | Path) -> tuple[dict[str, Any], Any]:
    """``(state_dict, peft.LoraConfig)`` of a PEFT adapter directory."""
    from peft import LoraConfig

    directory = Path(directory)
    if not (directory / PEFT_CONFIG_NAME).is_file():
        raise ConfigError(f"{directory} is not a PEFT adapter directory: it has no {PEFT_CONFIG_NAME}.")
    config = LoraConfig.from_pretrained(str(directory))
    weights = directory / PEFT_WEIGHTS_NAME
    return load_state_dict_file(weights if weights.is_file() else directory / PEFT_TORCH_WEIGHTS_NAME), config


def save_adapter(
    model: Any,
    spec: LoralibSpec,
    directory: str | Path,
    *,
    base_model_name_or_path: str | None = None,
    revision: str | None = None,
) -> Path:
    """Save a loralib-patched model's LoRA weights to ``directory`` as a loralib checkpoint *and* a PEFT adapter."""
    record = LoralibRecord(spec, base_model_name_or_path, revision, loralib_version())
    state = lora_state_dict(model, bias=spec.bias)
    save_loralib_checkpoint(state, record, directory)
    write_peft_adapter(_converted(state, record), directory)
    return Path(directory)


def convert_loralib_dir(
    source: str | Path,
    destination: str | Path | None = None,
    *,
    spec: LoralibSpec | None = None,
    weights: str | Path | None = None,
    base_model_name_or_path: str | None = None,
    revision: str | None = None,
) -> Path:
    """Convert a loralib checkpoint directory into a PEFT adapter directory (``destination``, default in place).

    This is what a Hub push callback calls before uploading. ``destination`` receives ``adapter_model.safetensors``,
    ``adapter_config.json`` and a copy of ``loralib_config.json`` (so the card can say it was trained with
    loralib and which slices). ``spec``/``weights`` are for hand-made checkpoints (see
    :func:`read_loralib_checkpoint`); ``base_model_name_or_path``/``revision`` override the recorded base.
    """
    state, record = read_loralib_checkpoint(source, spec=spec, weights=weights)
    record = LoralibRecord(
        record.spec,
        base_model_name_or_path or record.base_model_name_or_path,
        revision or record.revision,
        record.loralib_version or loralib_version(),
    )
    destination = Path(destination) if destination is not None else Path(source)
    write_peft_adapter(_converted(state, record), destination)
    (destination / LORALIB_CONFIG).write_text(json.dumps(record.to_dict(), indent=2) + "\n", encoding="utf-8")
    return destination


def convert_peft_dir(
    source: str | Path, destination: str | Path, *, qkv_slices: list[str] | tuple[str, ...] | str | None = None
) -> Path:
    """Convert a PEFT Phi-3 adapter directory into a loralib checkpoint directory (see :func:`peft_to_loralib`).

    Without ``qkv_slices``, an adapter converted from loralib goes back to its recorded slices and any other
    ``qkv_proj`` LoRA becomes ``qkv_slices="fused"``. Raises ``NotRepresentableError`` when loralib cannot express it.
    """
    state, config = read_peft_adapter(source)
    recorded = read_loralib_record(source)
    if qkv_slices is None and recorded is not None:
        qkv_slices = recorded.spec.qkv_slices
    loralib_state, spec = peft_to_loralib(state, config, qkv_slices=qkv_slices)
    record = LoralibRecord(spec, config.base_model_name_or_path, config.revision, loralib_version())
    return save_loralib_checkpoint(loralib_state, record, destination)


def _converted(state: dict[str, Any], record: LoralibRecord) -> PeftAdapter:
    adapter = loralib_to_peft(
        state, record.spec, base_model_name_or_path=record.base_model_name_or_path, revision=record.revision
    )
    return PeftAdapter(adapter.state_dict, adapter.config, record.to_dict())
