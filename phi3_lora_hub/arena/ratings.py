"""Scores from pairwise battles: win rates with Wilson intervals, and Bradley-Terry ratings with bootstrap CIs.

A battle is a mapping with ``model_a``, ``model_b`` and ``winner`` (``model_a``, ``model_b``, ``tie`` or
``tie (bothbad)``), as produced by :func:`phi3_lora_hub.arena.votes.to_battles`. Ties count as half a win
everywhere, as in FastChat's ``win_rate_adjusted``.

Bradley-Terry: P(a beats b) = 1 / (1 + base ** ((R_b - R_a) / scale)), fitted by maximum likelihood on all
battles at once (a tie is half a win and half a loss), so unlike online Elo the result does not depend on the
order of the votes. Ratings are centred on ``init`` (their mean is ``init``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

Battle = Mapping[str, str]
Z_95 = 1.959963984540054
_OUTCOME = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def outcome(battle: Battle) -> float:
    """1.0 when model_a won, 0.0 when model_b won, 0.5 for a tie; ``ValueError`` on an unknown winner."""
    try:
        return _OUTCOME[battle["winner"]]
    except KeyError:
        raise ValueError(f"unknown winner {battle.get('winner')!r}; expected one of {sorted(_OUTCOME)}") from None


def win_rate(wins: float, losses: float, ties: float) -> float:
    """``(wins + ties / 2) / total``; NaN when there are no battles."""
    total = wins + losses + ties
    return (wins + 0.5 * ties) / total if total else math.nan


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion of ``successes`` out of ``n`` (95% for the default ``z``).

    ``successes`` may be fractional (ties counted as half a win): the interval is then the one of the adjusted
    win rate. With ``n == 0`` the interval is the whole of [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"successes ({successes}) must lie between 0 and n ({n})")
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class WinRecord:
    """Wins, losses and ties of one side (a model, or the first model of a pair), with its win rate and CI."""

    wins: int
    losses: int
    ties: int

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float:
        return win_rate(self.wins, self.losses, self.ties)

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        """Wilson interval of :attr:`win_rate` (ties as half wins)."""
        return wilson_interval(self.wins + 0.5 * self.ties, self.n, z)


def _tally(battles: Iterable[Battle]) -> dict[tuple[str, str], list[int]]:
    """Counts per ordered pair ``(x, y)`` with ``x < y``: [x wins, y wins, ties]."""
    counts: dict[tuple[str, str], list[int]] = {}
    for battle in battles:
        a, b, result = battle["model_a"], battle["model_b"], outcome(battle)
        if a == b:
            continue  # a model against itself says nothing about its strength
        key, flipped = ((a, b), False) if a < b else ((b, a), True)
        row = counts.setdefault(key, [0, 0, 0])
        if result == 0.5:
            row[2] += 1
        else:
            row[0 if (result == 1.0) != flipped else 1] += 1
    return counts


def pair_records(battles: Iterable[Battle]) -> dict[tuple[str, str], WinRecord]:
    """Per pair of models (names sorted), the record of the first model against the second."""
    return {pair: WinRecord(*row) for pair, row in sorted(_tally(battles).items())}


def model_records(battles: Iterable[Battle]) -> dict[str, WinRecord]:
    """Per model, its wins, losses and ties against every other model together."""
    totals: dict[str, list[int]] = {}
    for (x, y), (x_wins, y_wins, ties) in _tally(battles).items():
        for model, wins, losses in ((x, x_wins, y_wins), (y, y_wins, x_wins)):
            row = totals.setdefault(model, [0, 0, 0])
            row[0] += wins
            row[1] += losses
            row[2] += ties
    return {model: WinRecord(*row) for model, row in sorted(totals.items())}


@dataclass(frozen=True)
class _Matchups:
    """Battles grouped into unique (a, b, outcome) rows with counts: fitting and bootstrapping work on these."""

    models: list[str]
    pairs: np.ndarray  # (rows, 2) model indices
    outcomes: np.ndarray  # (rows,) 1.0, 0.5 or 0.0 for model a
    counts: np.ndarray  # (rows,) how many battles had this row


def _matchups(battles: Iterable[Battle]) -> _Matchups:
    grouped: dict[tuple[str, str, float], int] = {}
    for battle in battles:
        if battle["model_a"] == battle["model_b"]:
            continue
        key = (battle["model_a"], battle["model_b"], outcome(battle))
        grouped[key] = grouped.get(key, 0) + 1
    models = sorted({name for a, b, _ in grouped for name in (a, b)})
    index = {name: i for i, name in enumerate(models)}
    rows = list(grouped.items())
    pairs = np.array([[index[a], index[b]] for (a, b, _), _ in rows], dtype=np.int64).reshape(-1, 2)
    outcomes = np.array([result for (_, _, result), _ in rows], dtype=np.float64)
    counts = np.array([count for _, count in rows], dtype=np.float64)
    return _Matchups(models, pairs, outcomes, counts)


def _fit(matchups: _Matchups, weights: np.ndarray, alpha: float, l2: float) -> np.ndarray:
    """Strengths (natural units, mean 0) maximizing the weighted Bradley-Terry likelihood minus an L2 penalty."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    n_models = len(matchups.models)
    a, b = matchups.pairs[:, 0], matchups.pairs[:, 1]
    y = matchups.outcomes

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = alpha * (theta[a] - theta[b])
        # log p and log(1 - p) via log_expit stay finite for large |logits|.
        loss = -np.sum(weights * (y * log_expit(logits) + (1 - y) * log_expit(-logits)))
        loss += 0.5 * l2 * float(theta @ theta)
        residual = weights * (y - expit(logits)) * alpha
        grad = l2 * theta
        np.add.at(grad, a, -residual)
        np.add.at(grad, b, residual)
        return float(loss), grad

    result = minimize(
        loss_and_grad,
        np.zeros(n_models),
        jac=True,
        # Dense BFGS: the problem is small (one variable per model), and it is far faster here than L-BFGS-B.
        method="BFGS",
        options={"maxiter": 1000, "gtol": 1e-9},
    )
    theta = result.x
    return theta - theta.mean()  # the likelihood ignores a common shift: pin the mean


def bradley_terry(
    battles: Iterable[Battle],
    *,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    l2: float = 1e-3,
) -> dict[str, float]:
    """Bradley-Terry ratings per model, sorted best first.

    ``l2`` is a weak Gaussian prior on the strengths (natural units): it keeps ratings finite when a model won
    (or lost) every battle, where the plain maximum-likelihood rating is infinite; ``l2=0`` gives the plain MLE.
    """
    matchups = _matchups(battles)
    if not matchups.models:
        return {}
    theta = _fit(matchups, matchups.counts, math.log(base), l2)
    ratings = {model: float(init + scale * value) for model, value in zip(matchups.models, theta, strict=True)}
    return dict(sorted(ratings.items(), key=lambda item: -item[1]))


@dataclass(frozen=True)
class Rating:
    """A model's Bradley-Terry rating with its bootstrap confidence interval and record."""

    model: str
    rating: float
    lower: float
    upper: float
    record: WinRecord


def leaderboard(
    battles: Iterable[Battle],
    *,
    rounds: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    l2: float = 1e-3,
) -> list[Rating]:
    """Ratings best first, each with a percentile bootstrap interval over ``rounds`` resamples of the battles.

    A resample keeps each battle a Poisson(1) number of times (the Poisson bootstrap: with many battles the same
    as drawing as many battles as there are with replacement). Unlike a fixed-size resample it also shows how
    little a handful of one-sided battles say: one battle, resampled to one battle, would always give the same
    rating, a zero-width interval. The same ``seed`` gives the same intervals. With ``rounds=0`` the interval
    collapses to the point estimate. Use a real prior (``l2`` of about 0.25, a standard deviation of
    ``2 * scale`` points) when there are few battles: it keeps one-sided resamples from running off to extreme
    (even negative) ratings.
    """
    battles = list(battles)
    matchups = _matchups(battles)
    if not matchups.models:
        return []
    alpha = math.log(base)
    point = _fit(matchups, matchups.counts, alpha, l2)
    lower, upper = point.copy(), point.copy()
    if rounds > 0:
        rng = np.random.default_rng(seed)
        # Each battle kept Poisson(1) times = each unique (pair, outcome) row kept Poisson(its count) times.
        draws = rng.poisson(matchups.counts, size=(rounds, len(matchups.counts))).astype(np.float64)
        samples = np.stack([_fit(matchups, weights, alpha, l2) for weights in draws])
        tail = (1.0 - confidence) / 2 * 100
        lower, upper = np.percentile(samples, [tail, 100 - tail], axis=0)
    records = model_records(battles)
    table = [
        Rating(
            model,
            float(init + scale * point[i]),
            float(init + scale * lower[i]),
            float(init + scale * upper[i]),
            records[model],
        )
        for i, model in enumerate(matchups.models)
    ]
    return sorted(table, key=lambda rating: -rating.rating)
