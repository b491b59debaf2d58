"""The leaderboard: per model (the base, or an adapter at one commit), its Bradley-Terry rating with a bootstrap
interval and its win rate with a Wilson interval, from the human votes (:mod:`phi3_lora_hub.arena.ratings`).

Few votes are shown for what they are worth: ratings are fitted with a Gaussian prior of :data:`PRIOR_SD` points
around 1000 (one vote moves a model by about 230 points, not 633; no resample runs off to a negative rating), the
bootstrap keeps each battle a Poisson number of times (one battle still gives an interval, not "1633 – 1633"),
and a model with fewer than :data:`MIN_BATTLES` battles is marked provisional, as LMSYS marks preliminary models.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from phi3_lora_hub.arena.ratings import leaderboard
from phi3_lora_hub.arena.votes import BASE, VoteRecord, to_battles

HEADERS = [
    "rank",
    "model",
    "rating",
    "rating 95% CI",
    "win rate",
    "win rate 95% CI",
    "wins",
    "losses",
    "ties",
    "votes",
    "status",
]
MIN_BATTLES = 10
"""A model with fewer battles (votes it took part in) than this is marked provisional."""
PRIOR_SD = 800.0
"""Standard deviation of the ratings' Gaussian prior, in rating points (the scale is 400 points per factor 10)."""
SCALE = 400.0
PRIOR_L2 = (SCALE / PRIOR_SD) ** 2
"""The prior as the ``l2`` penalty of :func:`~phi3_lora_hub.arena.ratings.leaderboard` (strengths in units of
``SCALE`` points)."""
PROVISIONAL = f"provisional (< {MIN_BATTLES} votes)"


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
        """Votes (battles) this model took part in."""
        return self.wins + self.losses + self.ties

    @property
    def provisional(self) -> bool:
        """Fewer than :data:`MIN_BATTLES` votes: the rating may still move a lot."""
        return self.votes < MIN_BATTLES

    def cells(self) -> list[object]:
        """The row as the app's table shows it, one value per :data:`HEADERS` entry."""
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
            PROVISIONAL if self.provisional else "",
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
    """Leaderboard rows, best rating first, from the human votes among ``records`` (ties count half).

    Ratings: Bradley-Terry with the :data:`PRIOR_SD` prior, 95% intervals from ``rounds`` bootstrap resamples with
    a fixed seed (the same votes always give the same table).
    """
    battles = to_battles(records, sources=("human",))
    table = leaderboard(battles, rounds=rounds, scale=SCALE, l2=PRIOR_L2)
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
