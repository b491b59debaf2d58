"""Which files of a checkpoint are published, and which make a checkpoint complete.

An adapter push carries an explicit allowlist: adapter weights (safetensors only) and config, tokenizer files,
generation config, the resolved recipe, the data and evaluation reports, the metrics so far. Optimizer, scheduler
and RNG state, ``training_args.bin`` (a full pickle that may hold a token) and every other pickle stay local.
The resumable state pushed with ``push_resumable_state=True`` is the whole checkpoint except ``training_args.bin``.
"""

from __future__ import annotations

from pathlib import Path

from phi3_lora_hub.run_file_names import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CARD_NAME,
    DATA_REPORT_FILE,
    EVAL_REPORT_FILE,
    GENERATION_CONFIG,
    LORALIB_CONFIG,
    LORALIB_STATE_DICT,
    LOSS_CURVE_NAME,
    RECIPE_FILE,
    SAMPLES_FILE,
    TRAINER_LOG,
    TRAINER_STATE,
    TRAINING_ARGS_JSON,
)

ADAPTER_FILES: tuple[str, ...] = (
    ADAPTER_WEIGHTS,
    ADAPTER_CONFIG,
    LORALIB_STATE_DICT,
    LORALIB_CONFIG,
    GENERATION_CONFIG,
    RECIPE_FILE,
    DATA_REPORT_FILE,
    TRAINER_STATE,
    TRAINER_LOG,
    TRAINING_ARGS_JSON,
    EVAL_REPORT_FILE,
    SAMPLES_FILE,
)
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
GENERATED_FILES: tuple[str, ...] = (CARD_NAME, LOSS_CURVE_NAME)
"""Written by the publisher next to the adapter files."""
PUBLISHED_FILES: frozenset[str] = frozenset(ADAPTER_FILES + TOKENIZER_FILES + GENERATED_FILES)
"""Every root file name an adapter push may create; the publisher replaces or removes only these on the Hub."""

NEVER_PUBLISHED: frozenset[str] = frozenset({"training_args.bin"})
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
RESUME_REQUIRED: tuple[str, ...] = ("optimizer.pt", "scheduler.pt")
"""Besides the adapter and ``trainer_state.json``; ``rng_state*.pth`` is checked separately (one per process)."""


def adapter_file_names(directory: str | Path) -> list[str]:
    """The allowlisted adapter files present in ``directory`` (sorted); never a pickle."""
    directory = Path(directory)
    names = [name for name in ADAPTER_FILES + TOKENIZER_FILES if (directory / name).is_file()]
    return sorted(name for name in names if not name.endswith(PICKLE_SUFFIXES))


def resumable_file_names(directory: str | Path) -> list[str]:
    """Every file of a checkpoint needed to resume it (relative POSIX paths, sorted), ``training_args.bin`` excluded."""
    directory = Path(directory)
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and path.name not in NEVER_PUBLISHED and path.name != CARD_NAME
    )


def missing_adapter_files(directory: str | Path) -> list[str]:
    """What an adapter directory lacks to be loaded by peft: its config and its safetensors weights."""
    directory = Path(directory)
    return [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (directory / name).is_file()]


def missing_checkpoint_files(directory: str | Path, *, resumable: bool) -> list[str]:
    """What a Trainer checkpoint lacks to be complete (``trainer_state.json`` is written last by Trainer).

    With ``resumable`` the optimizer, scheduler and RNG state are required too.
    """
    directory = Path(directory)
    missing = missing_adapter_files(directory)
    if not (directory / TRAINER_STATE).is_file():
        missing.append(TRAINER_STATE)
    if resumable:
        missing += [name for name in RESUME_REQUIRED if not (directory / name).is_file()]
        if not any(directory.glob("rng_state*.pth")):
            missing.append("rng_state.pth")
    return missing
