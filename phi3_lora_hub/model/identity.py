"""Which model answered: the base model, or an adapter at an exact revision with exactly these weights.

Votes, comparisons, evaluation reports and the Space name models this way, so a rating stays attached to the
weights that earned it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

BASE = "base"


@dataclass(frozen=True)
class ModelRef:
    """Which model answered: ``repo`` is ``"base"``, a Hub repo id or a local adapter directory.

    ``revision`` is the commit sha a Hub adapter was loaded at (``None`` for the base model and local
    directories), so a vote stays attached to the exact weights that produced the answer. ``weights`` is the
    sha256 of its ``adapter_model.safetensors`` (the Hub's LFS sha256): two commits with byte-identical weights
    (a commit that only edits the model card) are one model. ``name`` is the revision as picked (``main``,
    ``step-30``; ``None`` when picked by commit), kept so the leaderboard can name the model after a restart.
    """

    repo: str
    revision: str | None = None
    weights: str | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        """The name ratings use: ``base``, ``repo@sha256:<weights>`` when the weights are known, else
        ``repo@revision`` or ``repo``."""
        if self.weights:
            return f"{self.repo}@sha256:{self.weights}"
        return f"{self.repo}@{self.revision}" if self.revision else self.repo

    @classmethod
    def base(cls) -> ModelRef:
        return cls(BASE)

    def to_dict(self) -> dict[str, str | None]:
        """``repo`` and ``revision``, plus ``weights`` and ``name`` when known (records stay as they were before
        those existed otherwise)."""
        data = asdict(self)
        return {key: value for key, value in data.items() if value is not None or key in ("repo", "revision")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRef:
        return cls(data["repo"], data.get("revision"), data.get("weights"), data.get("name"))
