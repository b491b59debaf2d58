"""Does an adapter fit the loaded base? Checked from its config and its safetensors header, before any load.

PEFT checks none of this itself: an adapter made for another base loads silently, one written for Llama
(``q_proj``/``k_proj``/``v_proj``) loads onto Phi-3 with only its ``o_proj`` part (space-eval.md §4). So before
``load_adapter`` the Space requires:

- a LoRA adapter for a causal LM (:func:`phi3_lora_hub.model.adapters.check_lora_config`);
- ``base_model_name_or_path`` naming the loaded base (or one of its configured aliases);
- every ``target_modules`` entry matching a linear layer of the base (Phi-3 fuses ``qkv_proj`` and
  ``gate_up_proj``);
- no full-weight extras (``modules_to_save``, trainable tokens, layer replication, parameter targets);
- every tensor in ``adapter_model.safetensors`` being a LoRA matrix of an existing layer with matching sizes
  (read from the file header only; no tensor data is read).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from phi3_lora_hub.errors import ModelError
from phi3_lora_hub.model.adapters import check_lora_config
from phi3_lora_hub.space.refusal import Refusal, public_model_name, quote

_PEFT_PREFIX = "base_model.model."
# Llama-style projection names that Phi-3 fuses: a sign the adapter was made for another architecture.
_SPLIT_NAMES = {
    "q_proj": "qkv_proj",
    "k_proj": "qkv_proj",
    "v_proj": "qkv_proj",
    "gate_proj": "gate_up_proj",
    "up_proj": "gate_up_proj",
}
# Options that make an adapter more than LoRA matrices (full module copies, new tokens, replicated layers...).
_EXTRAS = ("modules_to_save", "trainable_token_indices", "layer_replication", "target_parameters")


@dataclass(frozen=True)
class BaseSignature:
    """What an adapter is checked against: the base's accepted names and its linear layers' sizes."""

    names: tuple[str, ...]
    """Names an adapter's ``base_model_name_or_path`` may use for this base (normalised by :func:`normalise`)."""
    linear: Mapping[str, tuple[int, int]]
    """Every ``torch.nn.Linear`` of the base: module name -> (in_features, out_features)."""

    @classmethod
    def of(cls, model: Any, names: Iterable[str]) -> BaseSignature:
        """Read the linear layers of ``model`` (a plain transformers model, before any PEFT wrapping)."""
        import torch

        linear = {
            name: (module.in_features, module.out_features)
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
        return replace(cls.of_names(names), linear=linear)

    @classmethod
    def of_names(cls, names: Iterable[str]) -> BaseSignature:
        """A base known by its names only, before it is loaded: adapters can be checked against its names, not
        its layers."""
        return cls(tuple(dict.fromkeys(normalise(name) for name in names if name)), {})

    def describe(self) -> str:
        """The accepted names as a visitor may see them: Hub ids as they are, local folders by their last part only
        (a refusal must never show a path of the server)."""
        return " or ".join(public_model_name(name) for name in self.names)


def normalise(name: str) -> str:
    """A base model name made comparable: Hub ids compare ignoring case, local paths as absolute paths."""
    name = str(name).strip().rstrip("/")
    if name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    return name.lower()


def check_config(config: Mapping[str, Any], base: BaseSignature, source: str, *, layers: bool = True) -> None:
    """Raise :class:`Refusal` unless ``config`` describes a plain LoRA adapter that fits ``base``.

    ``layers=False`` skips the check of ``target_modules`` against the base's layers (``space deploy`` checks
    adapters before any base model is loaded, from its name only).
    """
    try:
        check_lora_config(config, source)
    except ModelError as error:
        raise Refusal(str(error)) from None
    trained_on = config.get("base_model_name_or_path")
    if not trained_on:
        raise Refusal(
            f"{source} does not say which base model it was trained on (no base_model_name_or_path in its "
            f"adapter_config.json); this Space serves adapters for {base.describe()} only."
        )
    if normalise(trained_on) not in base.names:
        raise Refusal(
            f"{source} was trained on {quote(trained_on)}, but this Space runs {base.describe()}: an adapter only "
            "works on the base it was trained on."
        )
    extras = [key for key in _EXTRAS if config.get(key)]
    if extras:
        raise Refusal(
            f"{source} saves more than LoRA matrices ({', '.join(extras)}); this Space serves plain LoRA adapters only."
        )
    if layers:
        _check_targets(config.get("target_modules"), base, source)


def _check_targets(targets: Any, base: BaseSignature, source: str) -> None:
    names = list(base.linear)
    if targets == "all-linear":
        return
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error:
            raise Refusal(f"{source}: target_modules {quote(targets)} is not a valid regular expression.") from None
        if not any(pattern.fullmatch(name) for name in names):
            raise Refusal(f"{source}: target_modules {quote(targets)} matches no layer of the base model.")
        return
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise Refusal(f"{source}: target_modules must be a list of layer names or a regular expression.")
    missing = [t for t in targets if not any(name == t or name.endswith("." + t) for name in names)]
    if missing:
        fused = sorted({_SPLIT_NAMES[t] for t in missing if t in _SPLIT_NAMES})
        hint = (
            f" These are Llama-style names: Phi-3 fuses them into {', '.join(fused)}, so this adapter was made for "
            "another architecture."
            if fused
            else ""
        )
        available = sorted({name.rsplit(".", 1)[-1] for name in names})
        raise Refusal(
            f"{source} targets {', '.join(missing)}, which the base model does not have (its layers are "
            f"{', '.join(available)}).{hint}"
        )


def check_weights(path: Path, base: BaseSignature, source: str) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the safetensors file (name -> shape), when every tensor is a LoRA matrix that fits
    ``base``; :class:`Refusal` otherwise.

    Only the header is read (names, shapes, dtypes). Accepted tensors, per targeted layer with sizes
    (in, out): ``lora_A.weight`` (r, in), ``lora_B.weight`` (out, r), ``lora_B.bias`` (out,) and DoRA's
    ``lora_magnitude_vector`` (out,).
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            names = list(handle.keys())  # safe_open is not iterable
            header = {name: (handle.get_slice(name).get_shape(), handle.get_slice(name).get_dtype()) for name in names}
    except (SafetensorError, OSError, ValueError):
        raise Refusal(f"{source}: adapter_model.safetensors is not a valid safetensors file.") from None
    if not header:
        raise Refusal(f"{source}: adapter_model.safetensors holds no tensors.")
    for key, (shape, dtype) in header.items():
        problem = _tensor_problem(key, shape, dtype, base)
        if problem:
            raise Refusal(f"{source}: {problem}")
    return {key: tuple(shape) for key, (shape, _) in header.items()}


def _tensor_problem(key: str, shape: list[int], dtype: str, base: BaseSignature) -> str | None:
    if dtype not in ("F32", "F16", "BF16"):
        return f"tensor {quote(key)} has dtype {dtype}; LoRA weights are floating point."
    name = key[len(_PEFT_PREFIX) :] if key.startswith(_PEFT_PREFIX) else key
    for suffix, expected in (
        (".lora_A.weight", lambda r, i, o: [r, i]),
        (".lora_B.weight", lambda r, i, o: [o, r]),
        (".lora_B.bias", lambda r, i, o: [o]),
        (".lora_magnitude_vector", lambda r, i, o: [o]),
    ):
        if not name.endswith(suffix):
            continue
        module = name[: -len(suffix)]
        if module not in base.linear:
            return f"tensor {quote(key)} belongs to {quote(module)}, which is not a linear layer of the base model."
        in_features, out_features = base.linear[module]
        rank = shape[0] if suffix == ".lora_A.weight" else shape[-1]
        if shape != expected(rank, in_features, out_features):
            return (
                f"tensor {quote(key)} has shape {shape}, which does not fit the base layer {quote(module)} "
                f"({in_features} -> {out_features}); the adapter was made for another model size."
            )
        return None
    return f"tensor {quote(key)} is not a LoRA matrix (full module weights are not served)."
