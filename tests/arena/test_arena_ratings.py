"""Win rates, Wilson intervals and Bradley-Terry ratings against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phi3_lora_hub.arena.ratings import (
    bradley_terry,
    leaderboard,
    model_records,
    outcome,
    pair_records,
    wilson_interval,
    win_rate,
)


def battle(a: str, b: str, winner: str) -> dict[str, str]:
    return {"model_a": a, "model_b": b, "winner": winner}


def test_win_rate_counts_ties_as_half_a_win():
    assert win_rate(3, 1, 0) == 0.75
    assert win_rate(2, 1, 2) == pytest.approx(3 / 5)
    assert math.isnan(win_rate(0, 0, 0))


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (8, 10, (0.4902, 0.9433)),  # the textbook Wilson 95% interval for 8 of 10
        (2, 4, (0.1500, 0.8500)),  # p = 1/2: symmetric around 1/2
        (10, 10, (10 / (10 + 1.959963984540054**2), 1.0)),  # all successes: lower bound n / (n + z^2)
        (0, 5, (0.0, 5 * 1.959963984540054**2 / (5 * (5 + 1.959963984540054**2)))),
    ],
)
def test_wilson_interval_matches_hand_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected[0], abs=1e-4)
    assert high == pytest.approx(expected[1], abs=1e-4)


def test_wilson_interval_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(5, 4)
    # A tie-adjusted (fractional) count lies between the neighbouring integer counts.
    assert wilson_interval(2, 4)[0] < wilson_interval(2.5, 4)[0] < wilson_interval(3, 4)[0]


def test_records_count_each_pair_from_both_sides():
    battles = [
        battle("A", "B", "model_a"),
        battle("B", "A", "model_a"),  # B beat A, B on the left
        battle("B", "A", "tie"),
        battle("A", "C", "model_b"),
        battle("C", "B", "tie (bothbad)"),
        battle("A", "A", "model_a"),  # a model against itself: ignored
    ]
    pairs = pair_records(battles)
    assert (pairs[("A", "B")].wins, pairs[("A", "B")].losses, pairs[("A", "B")].ties) == (1, 1, 1)
    assert (pairs[("A", "C")].wins, pairs[("A", "C")].losses) == (0, 1)
    assert pairs[("B", "C")].ties == 1
    models = model_records(battles)
    assert (models["A"].wins, models["A"].losses, models["A"].ties) == (1, 2, 1)
    assert (models["C"].wins, models["C"].losses, models["C"].ties) == (1, 0, 1)
    assert models["A"].win_rate == pytest.approx(1.5 / 4)
    assert models["A"].interval() == wilson_interval(1.5, 4)


def test_unknown_winner_is_refused():
    with pytest.raises(ValueError, match="unknown winner"):
        outcome(battle("A", "B", "left"))


def test_bradley_terry_two_models_matches_the_closed_form():
    # A wins 3 of 4 (once as model_b): the MLE has P(A beats B) = 3/4, so R_A - R_B = 400 * log10(3).
    battles = [battle("A", "B", "model_a")] * 2 + [battle("B", "A", "model_b"), battle("B", "A", "model_a")]
    ratings = bradley_terry(battles, l2=0)
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(3), abs=1e-3)
    assert (ratings["A"] + ratings["B"]) / 2 == pytest.approx(1000)
    assert list(ratings) == ["A", "B"]


def test_bradley_terry_counts_a_tie_as_half_a_win():
    # 2 wins, 1 loss, 2 ties: A scores 3 of 5, so R_A - R_B = 400 * log10(3 / 2).
    battles = [battle("A", "B", "model_a")] * 2 + [battle("A", "B", "model_b")] + [battle("A", "B", "tie")] * 2
    ratings = bradley_terry(battles, l2=0)
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(1.5), abs=1e-3)


def test_bradley_terry_scale_base_and_init():
    battles = [battle("A", "B", "model_a")] * 3 + [battle("A", "B", "model_b")]
    ratings = bradley_terry(battles, l2=0, scale=1.0, base=math.e, init=0.0)
    assert ratings["A"] == pytest.approx(math.log(3) / 2, abs=1e-5)
    assert ratings["B"] == pytest.approx(-math.log(3) / 2, abs=1e-5)


def test_bradley_terry_cycle_is_a_draw():
    battles = [battle("A", "B", "model_a"), battle("B", "C", "model_a"), battle("C", "A", "model_a")]
    assert bradley_terry(battles, l2=0) == pytest.approx({"A": 1000.0, "B": 1000.0, "C": 1000.0}, abs=1e-4)


def test_bradley_terry_maximum_likelihood_conditions_hold():
    # At the MLE each model's expected score equals its observed score (the gradient is zero).
    rng = np.random.default_rng(3)
    names = ["A", "B", "C", "D"]
    battles = []
    for _ in range(200):
        a, b = rng.choice(4, size=2, replace=False)
        battles.append(battle(names[a], names[b], str(rng.choice(["model_a", "model_b", "tie"], p=[0.5, 0.3, 0.2]))))
    ratings = bradley_terry(battles, l2=0)
    expected = dict.fromkeys(names, 0.0)
    observed = dict.fromkeys(names, 0.0)
    for item in battles:
        a, b = item["model_a"], item["model_b"]
        p = 1 / (1 + 10 ** ((ratings[b] - ratings[a]) / 400))
        expected[a] += p
        expected[b] += 1 - p
        observed[a] += outcome(item)
        observed[b] += 1 - outcome(item)
    for name in names:
        assert expected[name] == pytest.approx(observed[name], abs=1e-4)


def test_prior_keeps_an_unbeaten_model_finite():
    battles = [battle("A", "B", "model_a")] * 5
    ratings = bradley_terry(battles)
    assert all(math.isfinite(value) for value in ratings.values())
    assert ratings["A"] > ratings["B"]
    # The prior barely moves well-determined ratings.
    mixed = [battle("A", "B", "model_a")] * 3 + [battle("A", "B", "model_b")]
    assert bradley_terry(mixed)["A"] == pytest.approx(bradley_terry(mixed, l2=0)["A"], abs=0.1)


def test_leaderboard_intervals():
    battles = [battle("A", "B", "model_a")] * 6 + [battle("A", "B", "model_b")] * 2 + [battle("B", "C", "tie")] * 4
    table = leaderboard(battles, rounds=50, seed=1)
    assert table[0].model == "A"
    for row in table:
        assert row.lower <= row.rating <= row.upper
    assert leaderboard(battles, rounds=50, seed=1) == table  # the seed fixes the resamples
    by_model = {row.model: row for row in table}
    assert (by_model["A"].record.wins, by_model["A"].record.losses) == (6, 2)

    # Ten times the data: a narrower interval around the same rating.
    wide = by_model["A"].upper - by_model["A"].lower
    narrow = {row.model: row for row in leaderboard(battles * 10, rounds=50, seed=1)}["A"]
    assert narrow.upper - narrow.lower < wide
    assert narrow.rating == pytest.approx(by_model["A"].rating, abs=1.0)


def test_leaderboard_of_ties_only_collapses_to_the_initial_rating():
    table = leaderboard([battle("A", "B", "tie")] * 7, rounds=20)
    for row in table:
        assert (row.lower, row.rating, row.upper) == pytest.approx((1000.0, 1000.0, 1000.0), abs=1e-6)


def test_leaderboard_without_rounds_has_point_intervals_and_empty_input():
    table = leaderboard([battle("A", "B", "model_a")] * 3 + [battle("A", "B", "model_b")], rounds=0)
    assert all(row.lower == row.rating == row.upper for row in table)
    assert leaderboard([]) == []
    assert bradley_terry([]) == {}
