"""Convert between a loralib state dict for Phi-3 and a standard PEFT LoRA adapter, exactly.

loralib → PEFT. ``lora.Linear`` and ``lora.Embedding`` map one to one (same A/B shapes; PEFT calls the embedding
pair ``lora_embedding_A/B``). ``lora.MergedLinear`` on ``qkv_proj`` with ``k`` adapted slices of ``s`` rows holds
``A`` (k·r × in, one r-row block per slice) and ``B`` (k·s × r); slice ``j`` gets ``B_j·A_j·alpha/r``. The PEFT LoRA
on the whole ``qkv_proj`` takes the same ``A`` (rank k·r) and a ``B`` of 3s × k·r that is ``B_j`` in the rows of
slice ``j`` and the columns of ``A_j``, zero everywhere else. Its update ``B·A`` is then ``B_j·A_j`` on adapted
slices and exactly zero on the others; with ``rank_pattern={"qkv_proj": k·r}`` and
``alpha_pattern={"qkv_proj": k·alpha}``, PEFT's ``lora_alpha / r`` is ``k·alpha / (k·r)``, the same number as
loralib's ``alpha / r``.

PEFT → loralib inverts this. A PEFT LoRA on ``qkv_proj`` becomes ``MergedLinear`` slices only if its ``B`` has that
block structure (checked to be exactly zero elsewhere); any PEFT ``qkv_proj`` LoRA is representable as
``qkv_slices="fused"`` (one ``lora.Linear``). Features loralib lacks (DoRA, ``modules_to_save``, per-module ranks
or scalings that no single ``r``/``lora_alpha`` reproduce, ...) raise :class:`NotRepresentableError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phi3_lora_hub.loralib_backend.errors import NotRepresentableError
from phi3_lora_hub.loralib_backend.spec import (
    CANONICAL_ORDER,
    EMBEDDING_MODULES,
    FUSED,
    QKV_MODULE,
    QKV_SLICES,
    LoralibSpec,
    matches_target,
)

PEFT_PREFIX = "base_model.model."
LORALIB_SUFFIXES = ("lora_A", "lora_B")
PEFT_LINEAR_SUFFIXES = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight"}
PEFT_EMBEDDING_SUFFIXES = {"lora_A": "lora_embedding_A", "lora_B": "lora_embedding_B"}
# Top-level modules of Phi3Model: a state dict of a patched `model.model` lacks the CausalLM's "model." prefix.
_PHI3_MODEL_CHILDREN = ("layers.", "embed_tokens.", "norm.", "rotary_emb.")
# peft.LoraConfig fields that must be off for an adapter to be plain LoRA that loralib layers can express.
_PEFT_FEATURES_LORALIB_LACKS = (
    "use_dora",
    "lora_bias",
    "modules_to_save",
    "trainable_token_indices",
    "layers_to_transform",
    "layer_replication",
    "exclude_modules",
    "target_parameters",
    "fan_in_fan_out",
    "use_qalora",
    "use_bdlora",
    "alora_invocation_tokens",
    "megatron_config",
)


@dataclass(frozen=True)
class PeftAdapter:
    """A PEFT LoRA adapter in memory: ``state_dict`` as in ``adapter_model.safetensors``, ``config`` as
    ``peft.LoraConfig`` keyword arguments."""

    state_dict: dict[str, Any]
    config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    """Where it came from, for model cards: ``{"trained_with": "loralib", "qkv_slices": [...], "r": ..., ...}``."""

    def lora_config(self) -> Any:
        """The ``peft.LoraConfig`` (in inference mode, like a saved adapter)."""
        from peft import LoraConfig

        return LoraConfig(**self.config)


def normalize_loralib_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Keys relative to ``Phi3ForCausalLM``: adds ``model.`` when the dict was taken from a patched ``Phi3Model``."""
    if state_dict and all(key.startswith(_PHI3_MODEL_CHILDREN) for key in state_dict):
        return {f"model.{key}": value for key, value in state_dict.items()}
    return dict(state_dict)


def _split_loralib_key(key: str) -> tuple[str, str]:
    module, _, suffix = key.rpartition(".")
    if suffix not in LORALIB_SUFFIXES or not module:
        raise NotRepresentableError(
            f"loralib state dict key {key!r} is not a LoRA tensor (expected '<module>.lora_A' or '<module>.lora_B'). "
            "Phi-3's layers have no bias, so a bias='all'/'lora_only' state dict holds LoRA tensors only; pass "
            "lora.lora_state_dict(model), not the full model state dict."
        )
    return module, suffix


def _group_modules(state_dict: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    modules: dict[str, dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        module, suffix = _split_loralib_key(key)
        modules.setdefault(module, {})[suffix] = tensor
    for module, pair in modules.items():
        if set(pair) != set(LORALIB_SUFFIXES):
            missing = sorted(set(LORALIB_SUFFIXES) - set(pair))
            raise NotRepresentableError(f"loralib state dict lacks {module}.{missing[0]} (it has {sorted(pair)}).")
    return modules


def loralib_to_peft(
    state_dict: Mapping[str, Any],
    spec: LoralibSpec,
    *,
    base_model_name_or_path: str | None = None,
    revision: str | None = None,
) -> PeftAdapter:
    """The PEFT LoRA adapter whose outputs on the unmodified base equal the loralib-patched model's.

    ``state_dict`` is ``lora.lora_state_dict(model)`` of a Phi-3 patched as ``spec`` says (keys relative to
    ``Phi3ForCausalLM`` or ``Phi3Model``). Tensors are copied as they are (same dtype); unadapted q/k/v slices get
    exact zeros. Raises :class:`NotRepresentableError` for keys that are not LoRA tensors of targeted modules or whose
    shapes contradict ``spec``.
    """
    import torch

    modules = _group_modules(normalize_loralib_keys(state_dict))
    peft_state: dict[str, Any] = {}
    present: set[str] = set()
    for module, pair in modules.items():
        short = module.rsplit(".", 1)[-1]
        if not spec.targets(module):
            raise NotRepresentableError(
                f"The state dict has LoRA weights for {module}, but the spec targets only {list(spec.target_modules)}."
            )
        lora_a, lora_b = pair["lora_A"], pair["lora_B"]
        sliced = short == QKV_MODULE and not spec.fused_qkv
        expected_rank = spec.qkv_rank if sliced else spec.r
        fits = lora_a.dim() == lora_b.dim() == 2 and lora_a.shape[0] == expected_rank and lora_b.shape[1] == spec.r
        if not fits or (sliced and lora_b.shape[0] % len(spec.qkv_slices)):
            raise NotRepresentableError(
                f"{module}: lora_A {tuple(lora_a.shape)} / lora_B {tuple(lora_b.shape)} do not fit r={spec.r}"
                f"{f' with qkv_slices={list(spec.qkv_slices)}' if sliced else ''} (lora_A needs {expected_rank} rows,"
                f" lora_B {spec.r} columns): the spec is not the one this state dict was trained with."
            )
        if short in EMBEDDING_MODULES:
            names = PEFT_EMBEDDING_SUFFIXES
        else:
            names = PEFT_LINEAR_SUFFIXES
            if sliced:
                lora_b = _block_diagonal_b(lora_b, spec, torch)
        peft_state[f"{PEFT_PREFIX}{module}.{names['lora_A']}"] = lora_a
        peft_state[f"{PEFT_PREFIX}{module}.{names['lora_B']}"] = lora_b
        present.add(short)
    config: dict[str, Any] = {
        "task_type": "CAUSAL_LM",
        "r": spec.r,
        "lora_alpha": spec.lora_alpha,
        "target_modules": [t for t in spec.target_modules if any(matches_target(m, t) for m in modules)],
        "lora_dropout": spec.lora_dropout,
        "bias": spec.bias,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": revision,
        "inference_mode": True,
    }
    slices = len(spec.qkv_slices) if QKV_MODULE in present and not spec.fused_qkv else 1
    if slices > 1:
        # rank k·r for qkv_proj; alpha scaled by k keeps lora_alpha / r equal to loralib's (checked below).
        config["rank_pattern"] = {QKV_MODULE: spec.r * slices}
        config["alpha_pattern"] = {QKV_MODULE: spec.lora_alpha * slices}
        if (spec.lora_alpha * slices) / (spec.r * slices) != spec.scaling:
            raise NotRepresentableError(
                f"lora_alpha={spec.lora_alpha!r} times {slices} slices is not exact in floating point, so PEFT's "
                "scaling would differ from loralib's in the last bit; use an integer lora_alpha."
            )
    return PeftAdapter(peft_state, config, {"trained_with": "loralib", **spec.to_dict()})


def _block_diagonal_b(lora_b: Any, spec: LoralibSpec, torch: Any) -> Any:
    """MergedLinear's stacked B (k·s × r) as a PEFT B over all of qkv_proj (3s × k·r): block j in slice j's rows."""
    slices = spec.qkv_slices
    rows = lora_b.shape[0] // len(slices)
    full = torch.zeros((rows * len(QKV_SLICES), spec.r * len(slices)), dtype=lora_b.dtype, device=lora_b.device)
    for j, name in enumerate(slices):
        position = QKV_SLICES.index(name)
        full[position * rows : (position + 1) * rows, j * spec.r : (j + 1) * spec.r] = lora_b[j * rows : (j + 1) * rows]
    return full


# -- PEFT to loralib -------------------------------------------------------------------------------------------------


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"Expected a peft.LoraConfig or a dict, got {type(config).__name__}.")


def _check_plain_lora(config: Mapping[str, Any]) -> None:
    peft_type = str(config.get("peft_type") or "LORA")
    if peft_type.rsplit(".", 1)[-1].upper() != "LORA":
        raise NotRepresentableError(f"This is a {peft_type} adapter; only LoRA adapters convert to loralib.")
    used = [name for name in _PEFT_FEATURES_LORALIB_LACKS if config.get(name) not in (None, False, [], {}, "")]
    if used:
        raise NotRepresentableError(
            f"The adapter uses PEFT features loralib layers cannot express: {', '.join(used)}. Convert an adapter "
            "trained without them, or keep using it with PEFT."
        )


def _parse_peft_key(key: str) -> tuple[str, str] | None:
    """(module, 'lora_A' | 'lora_B') for a LoRA tensor; None for an embedding copy PEFT saves alongside."""
    if not key.startswith(PEFT_PREFIX):
        raise NotRepresentableError(f"PEFT adapter key {key!r} does not start with {PEFT_PREFIX!r}.")
    rest = key[len(PEFT_PREFIX) :]
    for suffixes in (PEFT_LINEAR_SUFFIXES, PEFT_EMBEDDING_SUFFIXES):
        for loralib_suffix, peft_suffix in suffixes.items():
            if rest.endswith("." + peft_suffix):
                return rest[: -len(peft_suffix) - 1], loralib_suffix
    if rest.endswith(".base_layer.weight"):  # save_embedding_layers: the frozen embedding, unchanged by LoRA
        return None
    raise NotRepresentableError(
        f"PEFT adapter tensor {key!r} is not a LoRA A/B matrix (bias, DoRA magnitude, modules_to_save copy...); "
        "loralib layers cannot hold it."
    )


def peft_to_loralib(
    state_dict: Mapping[str, Any],
    config: Any,
    *,
    qkv_slices: tuple[str, ...] | list[str] | str | None = None,
) -> tuple[dict[str, Any], LoralibSpec]:
    """A loralib state dict and spec that reproduce a PEFT Phi-3 LoRA adapter exactly (tensors copied bit for bit).

    ``qkv_slices`` says how to express the ``qkv_proj`` LoRA: a list of slices (``["q", "v"]``) for
    ``lora.MergedLinear``, which needs ``lora_B`` to be zero outside those slices' blocks (as
    :func:`loralib_to_peft` writes it), or ``"fused"`` (the default) for one ``lora.Linear`` over the whole matrix.
    Raises :class:`NotRepresentableError` naming what does not fit.
    """
    from peft.utils.other import get_pattern_key

    settings = _config_dict(config)
    _check_plain_lora(settings)
    slices = LoralibSpec(r=1, lora_alpha=1, qkv_slices=FUSED if qkv_slices is None else qkv_slices).qkv_slices
    modules: dict[str, dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        parsed = _parse_peft_key(key)
        if parsed is not None:
            modules.setdefault(parsed[0], {})[parsed[1]] = tensor
    if not modules:
        raise NotRepresentableError("The PEFT adapter holds no LoRA tensors.")
    rank_pattern = settings.get("rank_pattern") or {}
    alpha_pattern = settings.get("alpha_pattern") or {}
    loralib_state: dict[str, Any] = {}
    per_module: dict[str, tuple[int, float]] = {}  # module -> (loralib rank, scaling)
    targets: list[str] = []
    for module, pair in modules.items():
        if set(pair) != set(LORALIB_SUFFIXES):
            raise NotRepresentableError(f"The PEFT adapter has only {sorted(pair)} for {module}.")
        lora_a, lora_b = pair["lora_A"], pair["lora_B"]
        rank = lora_a.shape[0]
        configured = rank_pattern.get(get_pattern_key(rank_pattern.keys(), module), settings.get("r"))
        if configured != rank or lora_b.shape[1] != rank:
            raise NotRepresentableError(
                f"{module}: lora_A has {rank} rows, lora_B {lora_b.shape[1]} columns, the config says r={configured}."
            )
        alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), module), settings.get("lora_alpha"))
        scaling = alpha / (math.sqrt(rank) if settings.get("use_rslora") else rank)
        short = module.rsplit(".", 1)[-1]
        if short == QKV_MODULE and slices != FUSED:
            lora_b = _slice_blocks(module, lora_b, slices)
            rank //= len(slices)
        per_module[module] = (rank, scaling)
        loralib_state[f"{module}.lora_A"] = lora_a
        loralib_state[f"{module}.lora_B"] = lora_b
        if short not in targets:
            targets.append(short)
    r, scaling = _common_rank_and_scaling(per_module)
    alpha = scaling * r
    alpha = int(alpha) if float(alpha).is_integer() else alpha
    if alpha / r != scaling:
        raise NotRepresentableError(f"No lora_alpha gives exactly scaling {scaling!r} at r={r} in floating point.")
    targets.sort(key=lambda name: CANONICAL_ORDER.index(name) if name in CANONICAL_ORDER else len(CANONICAL_ORDER))
    spec = LoralibSpec(
        r=r,
        lora_alpha=alpha,
        target_modules=tuple(targets),
        qkv_slices=slices,
        lora_dropout=float(settings.get("lora_dropout") or 0.0),
        bias=settings.get("bias") or "none",
    )
    return loralib_state, spec


def _slice_blocks(module: str, lora_b: Any, slices: tuple[str, ...]) -> Any:
    """The MergedLinear B (k·s × r) inside a PEFT B (3s × k·r); raises unless every other entry is exactly zero."""
    import torch

    out_rows, rank = lora_b.shape
    count = len(slices)
    if out_rows % len(QKV_SLICES) or rank % count:
        raise NotRepresentableError(
            f"{module}: lora_B is {out_rows} × {rank}; q/k/v slices need rows divisible by 3 and rank by {count}."
        )
    rows, r = out_rows // len(QKV_SLICES), rank // count
    outside = torch.ones_like(lora_b, dtype=torch.bool)
    blocks = []
    for j, name in enumerate(slices):
        position = QKV_SLICES.index(name)
        block = (slice(position * rows, (position + 1) * rows), slice(j * r, (j + 1) * r))
        outside[block] = False
        blocks.append(lora_b[block])
    if torch.count_nonzero(lora_b[outside]):
        raise NotRepresentableError(
            f"{module}: lora_B is not zero outside the {list(slices)} blocks, so this LoRA also changes other q/k/v "
            "slices (it adapts the whole qkv_proj). Convert with qkv_slices='fused' to keep it exactly."
        )
    return torch.cat(blocks, dim=0)


def _common_rank_and_scaling(per_module: Mapping[str, tuple[int, float]]) -> tuple[int, float]:
    values = set(per_module.values())
    if len(values) != 1:
        shown = ", ".join(f"{m}: r={r}, scaling={s:g}" for m, (r, s) in list(per_module.items())[:6])
        raise NotRepresentableError(
            "loralib layers here share one r (per q/k/v slice) and one lora_alpha, but this adapter's modules differ "
            f"({shown}, ...). Convert an adapter with one rank and one scaling."
        )
    return next(iter(values))
