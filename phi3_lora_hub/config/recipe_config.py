"""The whole configuration of a recipe run, resolved, in one dataclass that round-trips through YAML."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phi3_lora_hub.errors import ConfigError, unknown_key_error
from phi3_lora_hub.hub.settings import hub_default

DEFAULT_MODEL = "microsoft/Phi-3-mini-4k-instruct"
DEFAULT_DATASET = "HuggingFaceH4/ultrachat_200k"
HUB_SETTING_NAMES = {"hub_on_push_failure": "on_failure"}
"""The ``hub_*`` recipe settings not named ``hub_`` + their ``HubPushSettings`` field."""


@dataclass
class RecipeConfig:
    """Every setting of a run. ``training`` and ``lora`` hold the resolved ``SFTConfig``/``LoraConfig`` values."""

    model: str = DEFAULT_MODEL
    """Hub id or local directory of a Phi-3 model (``model_type: phi3``); ``tiny`` is the offline tiny Phi-3 (the
    resolved config records the directory it was built in)."""
    model_revision: str | None = None
    """Branch, tag or commit of the base model. Pin it: Phi-3's chat template changed silently in 2024."""
    dataset: str | None = DEFAULT_DATASET
    """Hub dataset id or local file (.jsonl, .json, .csv, .parquet). In-memory data (a ``Dataset`` or a list) is
    recorded as ``None``: pass it again, e.g. ``Phi3LoraRecipe.from_yaml(path, dataset=rows)``."""
    dataset_config: str | None = None
    """Configuration name of a Hub dataset."""
    dataset_split: str | None = None
    """Split to train on; ``None`` picks ``train`` or ``train_sft``."""
    eval_dataset: str | None = None
    """Separate evaluation data (same kinds as ``dataset``); ``None`` uses ``eval_split`` or ``eval_size``."""
    eval_split: str | None = None
    """A split of ``dataset`` (or of ``eval_dataset``) to evaluate on, e.g. ``test_sft``. A local file or a list has
    no splits: use ``eval_dataset`` or ``eval_size`` for those (a split there is a ``ConfigError``)."""
    eval_size: float = 0.0
    """Hold out this fraction (<1) or number (>=1) of training conversations for evaluation when no eval data."""
    max_train_samples: int | None = None
    """Use only the first N training rows (quick experiments)."""
    max_eval_samples: int | None = None
    """Use only the first N evaluation rows."""
    format: str | None = None
    """Force a data format instead of detecting it (see ``phi3_lora_hub.data.formats.FORMATS``)."""
    on_bad_rows: str = "raise"
    """``raise``: stop with every problem listed; ``skip``: train on the good rows and report the rest."""
    role_map: dict[str, str] | None = None
    """Extra role names mapped onto system/user/assistant, e.g. ``{"observation": "user"}``."""
    text_part_types: list[str] = field(default_factory=lambda: ["text"])
    """Content-part types trained on as text (e.g. add ``reasoning``)."""
    assistant_only_loss: bool = True
    """Train on assistant answers (and their ``<|end|>``) only; ``False`` trains on the whole sequence."""
    quantization: str | None = None
    """``None`` for LoRA, ``"4bit"`` for QLoRA (NF4, double quantization, needs CUDA and bitsandbytes)."""
    dtype: str = "float32"
    """Precision the base weights are loaded in: bfloat16 on GPUs that support it, float32 on CPU."""
    attn_implementation: str = "sdpa"
    """``flash_attention_2`` on CUDA when installed, else ``sdpa``."""
    output_dir: str = "phi3-lora-output"
    """Where checkpoints, the final adapter (``adapter/``) and logs go."""
    hub_model_id: str | None = None
    """When set, every checkpoint is pushed to this Hub repository while training runs (``namespace/name``).

    The other ``hub_*`` settings are the fields of :class:`~phi3_lora_hub.hub.settings.HubPushSettings`, which
    documents each one, with its default (``hub_on_push_failure`` is its ``on_failure``)."""
    hub_private: bool = hub_default("private")
    hub_branch_template: str = hub_default("branch_template")
    hub_push_resumable_state: bool = hub_default("push_resumable_state")
    hub_flush_timeout: float = hub_default("flush_timeout")
    hub_on_push_failure: str = hub_default("on_failure")
    hub_card_template: str | None = hub_default("card_template")
    hub_card_license: str = hub_default("card_license")
    training: dict[str, Any] = field(default_factory=dict)
    """Resolved ``trl.SFTConfig`` arguments."""
    lora: dict[str, Any] = field(default_factory=dict)
    """Resolved ``peft.LoraConfig`` arguments."""
    evaluation: dict[str, Any] = field(default_factory=dict)
    """Resolved evaluation settings: the report after training and the sample generations at each checkpoint
    (see ``phi3_lora_hub.evaluation.settings.EVALUATION_DEFAULTS``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The YAML text of this config; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
        return text

    def hub_settings(self) -> dict[str, Any]:
        """The ``hub_*`` settings other than ``hub_model_id``, named as :class:`HubPushSettings` fields."""
        return {
            HUB_SETTING_NAMES.get(name, name.removeprefix("hub_")): value
            for name, value in self.to_dict().items()
            if name.startswith("hub_") and name != "hub_model_id"
        }

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


def read_yaml_settings(path: str | Path) -> dict[str, Any]:
    """Read a recipe YAML file into a dict, refusing unknown top-level keys."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"Config file {str(path)!r} does not exist.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping of settings, not a {type(data).__name__}.")
    check_keys(data, RecipeConfig.field_names(), "recipe")
    return dict(data)


def check_keys(settings: Mapping[str, Any], valid: tuple[str, ...], kind: str) -> None:
    for key in settings:
        if key not in valid:
            raise unknown_key_error(kind, str(key), valid)


def apply_override(settings: dict[str, Any], assignment: str) -> None:
    """Apply one ``key=value`` override (``training.learning_rate=2e-4``); the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}.")
    dotted, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    keys = dotted.strip().split(".")
    check_keys({keys[0]: None}, RecipeConfig.field_names(), "recipe")
    target = settings
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section.")
    target[keys[-1]] = value
