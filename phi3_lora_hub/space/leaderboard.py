"""The leaderboard: per model (the base, or an adapter at one commit), its Bradley-Terry rating with a bootstrap
interval and its win rate with a Wilson interval, from the human votes (:mod:`phi3_lora_hub.arena.ratings`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from phi3_lora_hub.arena.ratings import leaderboard
from phi3_lora_hub.arena.votes import BASE, VoteRecord, to_battles

HEADERS = ["rank", "model", "rating", "rating 95% CI", "win rate", "win rate 95% CI", "wins", "losses", "ties", "votes"]


@dataclass(frozen=True)
class Row:
    """One line of the leaderboard."""

    rank: int
    key: str
    """``base`` or ``repo@commit`` (:attr:`ModelRef.key`)."""
    name: str
    rating: float
    rating_low: float
    rating_high: float
    win_rate: float
    win_low: float
    win_high: float
    wins: int
    losses: int
    ties: int

    @property
    def votes(self) -> int:
        return self.wins + self.losses + self.ties

    def cells(self) -> list[object]:
        return [
            self.rank,
            self.name,
            round(self.rating),
            f"{self.rating_low:.0f} – {self.rating_high:.0f}",
            f"{self.win_rate:.0%}",
            f"{self.win_low:.0%} – {self.win_high:.0%}",
            self.wins,
            self.losses,
            self.ties,
            self.votes,
        ]


def display_name(key: str, labels: Mapping[str, str]) -> str:
    """How a model key is shown: its label when known (``repo @ step-30 (1a2b3c4)``), else a shortened key."""
    if key == BASE:
        return "base model"
    if key in labels:
        return labels[key]
    repo, _, commit = key.partition("@")
    return f"{repo} @ {commit[:7]}" if commit else repo


def rows(records: Sequence[VoteRecord], labels: Mapping[str, str] | None = None, *, rounds: int = 100) -> list[Row]:
    """Leaderboard rows, best rating first, from the human votes among ``records`` (ties count half)."""
    battles = to_battles(records, sources=("human",))
    table = leaderboard(battles, rounds=rounds)
    result = []
    for rank, rating in enumerate(table, start=1):
        low, high = rating.record.interval()
        result.append(
            Row(
                rank,
                rating.model,
                display_name(rating.model, labels or {}),
                rating.rating,
                rating.lower,
                rating.upper,
                rating.record.win_rate,
                low,
                high,
                rating.record.wins,
                rating.record.losses,
                rating.record.ties,
            )
        )
    return result


class CachedLeaderboard:
    """Recomputes the rows only when the votes changed (the bootstrap costs a fraction of a second)."""

    def __init__(
        self,
        records: Callable[[], Sequence[VoteRecord]],
        version: Callable[[], int],
        labels: Callable[[], Mapping[str, str]],
        *,
        rounds: int = 100,
    ) -> None:
        self._records, self._version, self._labels = records, version, labels
        self.rounds = rounds
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], list[Row]] | None = None

    def rows(self) -> list[Row]:
        with self._lock:
            labels = self._labels()
            key = (self._version(), len(labels))
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, rows(self._records(), labels, rounds=self.rounds))
            return self._cached[1]
