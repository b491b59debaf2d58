"""The leaderboard: per model (the base, or an adapter at one commit), its Bradley-Terry rating with a bootstrap
interval and its win rate with a Wilson interval, from the human votes (:mod:`phi3_lora_hub.arena.ratings`).

Few votes are shown for what they are worth: ratings are fitted with a Gaussian prior of :data:`PRIOR_SD` points
around 1000 (one vote moves a model by about 230 points, not 633; no resample runs off to a negative rating), the
bootstrap keeps each battle a Poisson number of times (one battle still gives an interval, not "1633 – 1633"),
and a model with fewer than :data:`MIN_BATTLES` battles is marked provisional, as LMSYS marks preliminary models.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from phi3_lora_hub.arena.ratings import leaderboard
from phi3_lora_hub.arena.votes import VoteRecord, to_battles
from phi3_lora_hub.model.identity import BASE
from phi3_lora_hub.space.hub_adapters import order_revisions

WEIGHTS_PREFIX = "sha256:"

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
    """``base``, ``repo@sha256:<weights>``, or ``repo@commit`` for votes without a weights hash
    (:attr:`ModelRef.key`)."""
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


def display_name(key: str, names: Mapping[str, Iterable[str]], commit: str | None = None) -> str:
    """How a model key is shown: the repo with every revision name known to point at its weights and the latest
    commit it was voted at (``repo @ main, step-30 (1a2b3c4)``), else the repo with a short commit or weights hash."""
    if key == BASE:
        return "base model"
    repo, _, version = key.partition("@")
    known = sorted(set(names.get(key, ())))
    short = f" ({commit[:7]})" if commit else ""
    if known:
        return f"{repo} @ {', '.join(order_revisions(known))}{short}"
    if commit:
        return f"{repo} @ {commit[:7]}"
    if version.startswith(WEIGHTS_PREFIX):
        return f"{repo} @ weights {version[len(WEIGHTS_PREFIX) :][:7]}"
    return f"{repo} @ {version[:7]}" if version else repo


def revision_names(records: Iterable[VoteRecord]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """From the votes themselves (so it survives restarts): model key -> the revision names it was picked by, and
    model key -> the commit of its latest vote."""
    names: dict[str, set[str]] = {}
    commits: dict[str, tuple[float, str]] = {}
    for record in records:
        for side in (record.left, record.right):
            model = side.model
            if model.name:
                names.setdefault(model.key, set()).add(model.name)
            if model.revision and record.tstamp >= commits.get(model.key, (-1.0, ""))[0]:
                commits[model.key] = (record.tstamp, model.revision)
    return names, {key: commit for key, (_, commit) in commits.items()}


def rows(
    records: Sequence[VoteRecord], names: Mapping[str, Iterable[str]] | None = None, *, rounds: int = 100
) -> list[Row]:
    """Leaderboard rows, best rating first, from the human votes among ``records`` (ties count half).

    One row per model: an adapter's votes at every commit with the same weights count together
    (:attr:`ModelRef.key`), and the row is named after every revision name the votes and ``names`` (model key ->
    revision names, e.g. learned by the Space while it runs) give for it.

    Ratings: Bradley-Terry with the :data:`PRIOR_SD` prior, 95% intervals from ``rounds`` bootstrap resamples with
    a fixed seed (the same votes always give the same table).
    """
    battles = to_battles(records, sources=("human",))
    table = leaderboard(battles, rounds=rounds, scale=SCALE, l2=PRIOR_L2)
    known, commits = revision_names(records)
    for key, more in (names or {}).items():
        known.setdefault(key, set()).update(more)
    result = []
    for rank, rating in enumerate(table, start=1):
        low, high = rating.record.interval()
        result.append(
            Row(
                rank,
                rating.model,
                display_name(rating.model, known, commits.get(rating.model)),
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
    """Recomputes the rows only when the votes or the known revision names changed (the bootstrap costs a fraction
    of a second)."""

    def __init__(
        self,
        records: Callable[[], Sequence[VoteRecord]],
        version: Callable[[], int],
        names: Callable[[], Mapping[str, Iterable[str]]],
        *,
        rounds: int = 100,
    ) -> None:
        self._records, self._version, self._names = records, version, names
        self.rounds = rounds
        self._lock = threading.Lock()
        self._cached: tuple[object, list[Row]] | None = None

    def rows(self) -> list[Row]:
        """The current rows (see :func:`rows`)."""
        with self._lock:
            names = self._names()
            key = (self._version(), sorted((model, sorted(revisions)) for model, revisions in names.items()))
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, rows(self._records(), names, rounds=self.rounds))
            return self._cached[1]
