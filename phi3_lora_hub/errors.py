"""The exceptions this package raises on purpose. Each message says what is wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class Phi3LoraHubError(Exception):
    """Base class of every error raised on purpose by phi3-lora-hub; the CLI prints these without a traceback."""


class ConfigError(Phi3LoraHubError, ValueError):
    """A recipe setting is unknown, has a wrong value, or contradicts another one."""


class ModelError(Phi3LoraHubError, ValueError):
    """The base model cannot be used: not Phi-3, missing target modules, unsupported quantization, ..."""


@dataclass(frozen=True)
class DataProblem:
    """One problem found in one row of a dataset."""

    row: int
    """0-based index of the row in the source data (blank lines of a JSONL file are not rows)."""
    field: str
    """Where in the row, e.g. ``messages[2].content``."""
    message: str
    """What is wrong and what was expected."""
    location: str | None = None
    """Where the row is in its file: ``line 2`` (JSONL, CSV: the 1-based line where the row starts) or
    ``JSON array index 1``; ``None`` for in-memory rows and Parquet files."""

    def __str__(self) -> str:
        where = f" ({self.location})" if self.location is not None else ""
        return f"row {self.row}{where}, {self.field}: {self.message}"


class DataError(Phi3LoraHubError, ValueError):
    """The dataset cannot be used as it is. ``problems`` lists every problem found, with the row number."""

    def __init__(self, message: str, problems: Sequence[DataProblem] = ()) -> None:
        self.problems = tuple(problems)
        shown = "\n".join(f"  - {problem}" for problem in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{message}\n{shown}{more}" if self.problems else message)


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to ``name`` (to suggest a fix for a typo), or ``None`` when nothing is close."""
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_error(kind: str, key: str, valid: Sequence[str], hint: str = "") -> ConfigError:
    """A ``ConfigError`` for an unknown setting, naming it and suggesting the closest valid one."""
    suggestion = closest(key, valid)
    did_you_mean = f" Did you mean {suggestion!r}?" if suggestion else ""
    return ConfigError(f"Unknown {kind} key {key!r}.{did_you_mean}{hint}")
