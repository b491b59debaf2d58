"""What a loralib-patched Phi-3 looks like: :class:`LoralibSpec`, and the recipe's ``lora={"backend": "loralib"}``.

A loralib state dict holds only tensors (``...qkv_proj.lora_A``, ``...qkv_proj.lora_B``): it does not say which
q/k/v slices were adapted, nor ``lora_alpha``. The spec records that, so a checkpoint can be re-loaded, checked and
converted to a PEFT adapter. Pure Python: importing this module imports neither torch nor loralib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from phi3_lora_hub.errors import ConfigError, unknown_key_error
from phi3_lora_hub.model.targets import PHI3_TARGET_MODULES

BACKEND_KEY = "backend"
PEFT_BACKEND = "peft"
LORALIB_BACKEND = "loralib"
BACKENDS = (PEFT_BACKEND, LORALIB_BACKEND)

QKV_MODULE = "qkv_proj"
QKV_SLICES = ("q", "k", "v")
FUSED = "fused"
"""``qkv_slices="fused"``: one ``lora.Linear`` over the whole ``qkv_proj``, exactly what PEFT does."""
DEFAULT_QKV_SLICES = ("q", "v")
"""The LoRA paper's setting: adapt the query and value projections only."""
EMBEDDING_MODULES = frozenset({"embed_tokens"})
"""Phi-3's only ``nn.Embedding``: targeting it gives a ``lora.Embedding``."""
BIAS_MODES = ("none", "all", "lora_only")
ALL_LINEAR = "all-linear"
CANONICAL_ORDER = ("embed_tokens", *PHI3_TARGET_MODULES, "lm_head")
"""Order in which converted specs list their targets (module order in a Phi-3 model)."""

# Settings the loralib backend shares with peft.LoraConfig (same names, same meaning).
SHARED_KEYS = ("r", "lora_alpha", "lora_dropout", "bias", "target_modules")
# Settings that only exist for the loralib backend, with what they mean.
LORALIB_ONLY_KEYS: dict[str, str] = {
    "qkv_slices": "which of q, k, v get LoRA inside the fused qkv_proj (list), or 'fused' for the whole matrix",
    "merge_weights": "loralib's merge_weights: fold LoRA into the weights on eval() and back out on train()",
}
LORALIB_KEYS = (BACKEND_KEY, *SHARED_KEYS, *LORALIB_ONLY_KEYS)


@dataclass(frozen=True)
class LoralibSpec:
    """How loralib layers are put into Phi-3; the same for every layer (loralib has no per-module rank here).

    ``r`` is loralib's rank *per adapted slice*: ``qkv_slices=("q", "v")`` gives ``qkv_proj`` a ``lora_A`` of
    ``2 * r`` rows. Every LoRA layer scales by ``lora_alpha / r``.
    """

    r: int
    lora_alpha: float
    target_modules: tuple[str, ...] = PHI3_TARGET_MODULES
    qkv_slices: tuple[str, ...] | str = DEFAULT_QKV_SLICES
    lora_dropout: float = 0.0
    bias: str = "none"
    merge_weights: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ConfigError(f"lora r must be a positive integer, got {self.r!r}.")
        alpha = self.lora_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ConfigError(f"lora lora_alpha must be a positive number, got {alpha!r}.")
        if isinstance(self.lora_dropout, bool) or not isinstance(self.lora_dropout, (int, float)):
            raise ConfigError(f"lora lora_dropout must be a number in [0, 1), got {self.lora_dropout!r}.")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if self.bias not in BIAS_MODES:
            raise ConfigError(f"lora bias must be one of {list(BIAS_MODES)} (loralib's modes), got {self.bias!r}.")
        if not isinstance(self.merge_weights, bool):
            raise ConfigError(f"lora merge_weights must be true or false, got {self.merge_weights!r}.")
        object.__setattr__(self, "target_modules", _normalize_targets(self.target_modules))
        object.__setattr__(self, "qkv_slices", _normalize_slices(self.qkv_slices))

    @property
    def scaling(self) -> float:
        """loralib's ``lora_alpha / r``, the factor every LoRA update is multiplied by."""
        return self.lora_alpha / self.r

    @property
    def fused_qkv(self) -> bool:
        return self.qkv_slices == FUSED

    @property
    def enable_lora(self) -> list[bool]:
        """``enable_lora`` for ``lora.MergedLinear`` on ``qkv_proj`` (q, k, v order); all True when fused."""
        if self.fused_qkv:
            return [True, True, True]
        return [name in self.qkv_slices for name in QKV_SLICES]

    @property
    def qkv_rank(self) -> int:
        """Rows of ``qkv_proj.lora_A``: ``r`` per adapted slice, or ``r`` for the fused layer."""
        return self.r if self.fused_qkv else self.r * len(self.qkv_slices)

    def targets(self, module_name: str) -> bool:
        """Whether the module with this full name is one of ``target_modules``."""
        return any(matches_target(module_name, target) for target in self.target_modules)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (lists, not tuples); :meth:`from_dict` reads them back."""
        return {
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "target_modules": list(self.target_modules),
            "qkv_slices": self.qkv_slices if self.fused_qkv else list(self.qkv_slices),
            "lora_dropout": self.lora_dropout,
            "bias": self.bias,
            "merge_weights": self.merge_weights,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoralibSpec:
        """Build from :meth:`to_dict` output or the recipe's resolved ``lora`` settings (``backend`` is ignored)."""
        known = {key: value for key, value in data.items() if key != BACKEND_KEY}
        unknown = [key for key in known if key not in {*SHARED_KEYS, *LORALIB_ONLY_KEYS}]
        if unknown:
            raise unknown_key_error("loralib spec", unknown[0], LORALIB_KEYS)
        missing = [key for key in ("r", "lora_alpha") if key not in known]
        if missing:
            raise ConfigError(f"loralib spec lacks {missing}: r and lora_alpha cannot be read from a state dict.")
        return cls(**known)


def matches_target(name: str, target: str) -> bool:
    """PEFT's list semantics: a module matches ``target`` when its name equals it or ends with ``"." + target``."""
    return name == target or name.endswith("." + target)


def _normalize_targets(targets: Any) -> tuple[str, ...]:
    if targets == ALL_LINEAR:
        return PHI3_TARGET_MODULES
    if isinstance(targets, str):
        raise ConfigError(
            f"lora target_modules={targets!r}: the loralib backend takes a list of module names (e.g. "
            f"{list(PHI3_TARGET_MODULES)}, plus 'embed_tokens' for lora.Embedding) or 'all-linear', not a regex."
        )
    if not isinstance(targets, Sequence) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ConfigError(f"lora target_modules must be a non-empty list of module names, got {targets!r}.")
    if len(set(targets)) != len(targets):
        raise ConfigError(f"lora target_modules lists a module twice: {list(targets)}.")
    return tuple(targets)


def _normalize_slices(slices: Any) -> tuple[str, ...] | str:
    if slices == FUSED:
        return FUSED
    if isinstance(slices, str) or not isinstance(slices, Sequence) or not slices:
        raise ConfigError(
            f"lora qkv_slices must be a non-empty list drawn from {list(QKV_SLICES)} (e.g. ['q', 'v'], the LoRA "
            f"paper's setting) or {FUSED!r} (one LoRA over the whole qkv_proj), got {slices!r}."
        )
    wrong = [name for name in slices if name not in QKV_SLICES]
    if wrong or len(set(slices)) != len(slices):
        raise ConfigError(f"lora qkv_slices {list(slices)!r}: each of 'q', 'k', 'v' may appear once, nothing else.")
    return tuple(name for name in QKV_SLICES if name in slices)  # canonical q, k, v order


def resolve_loralib_settings(
    user: Mapping[str, Any], defaults: Mapping[str, Any], peft_fields: Sequence[str]
) -> dict[str, Any]:
    """The recipe's resolved ``lora`` settings for ``backend="loralib"``, validated and normalized.

    ``user`` is what the user passed (``backend`` included); ``defaults`` are the recipe's PEFT defaults, of which
    the shared keys apply. A ``peft.LoraConfig`` option loralib lacks (``use_dora``, ``modules_to_save``, ...) is
    accepted only at its default value; anything else raises ``ConfigError`` naming the key.
    """
    for key, value in user.items():
        if key in LORALIB_KEYS:
            continue
        if key in peft_fields:
            if key in defaults and value == defaults[key]:
                continue  # a PEFT option at its default does nothing either way
            raise ConfigError(
                f"lora key {key!r} is a PEFT option the loralib backend does not have; remove it or use "
                f"backend='peft'. The loralib backend takes: {', '.join(LORALIB_KEYS)}."
            )
        raise unknown_key_error("lora", key, LORALIB_KEYS, " (loralib backend)")
    if QKV_MODULE not in _normalize_targets(user.get("target_modules", defaults["target_modules"])) and (
        "qkv_slices" in user
    ):
        raise ConfigError(f"lora qkv_slices is set but target_modules does not include {QKV_MODULE!r}.")
    settings = {key: defaults[key] for key in SHARED_KEYS}
    settings.update({key: value for key, value in user.items() if key in LORALIB_KEYS and key != BACKEND_KEY})
    spec = LoralibSpec.from_dict(settings)
    return {BACKEND_KEY: LORALIB_BACKEND, **spec.to_dict()}


def is_loralib(settings: Mapping[str, Any]) -> bool:
    """Whether resolved ``lora`` settings select the loralib backend."""
    return settings.get(BACKEND_KEY, PEFT_BACKEND) == LORALIB_BACKEND
