"""The leaderboard with few votes: provisional rows, intervals that say how little is known, reproducible tables."""

from __future__ import annotations

import random
import re

from phi3_lora_hub.arena.votes import SideRecord, VoteRecord
from phi3_lora_hub.model.identity import ModelRef
from phi3_lora_hub.space.leaderboard import HEADERS, MIN_BATTLES, PROVISIONAL, rows

MODELS = {
    "base": ModelRef.base(),
    "A": ModelRef("tester/compass", "a" * 40),
    "B": ModelRef("tester/compass", "b" * 40),
    "C": ModelRef("tester/terse", "c" * 40),
}


def vote(left: str, right: str, kind: str) -> VoteRecord:
    sides = [
        SideRecord(MODELS[name], [{"role": "user", "content": "q"}, {"role": "assistant", "content": name}])
        for name in (left, right)
    ]
    return VoteRecord(sides[0], sides[1], kind)


def interval(cell: str) -> tuple[float, float]:
    low, high = re.fullmatch(r"(-?\d+) – (-?\d+)", cell).groups()
    return float(low), float(high)


def test_one_vote_gives_provisional_rows_with_intervals_that_are_not_a_point():
    table = rows([vote("A", "base", "leftvote")])
    assert [row.key for row in table] == [MODELS["A"].key, "base"]
    for row in table:
        cells = dict(zip(HEADERS, row.cells(), strict=True))
        low, high = interval(cells["rating 95% CI"])
        assert 0 < low < high and low <= row.rating <= high, cells
        assert row.provisional and cells["status"] == PROVISIONAL and cells["votes"] == 1
    winner = table[0]
    assert 1000 < winner.rating < 1400  # one vote is a small step, not +633 points


def test_few_votes_never_give_a_negative_bound_or_a_point_interval():
    generator = random.Random(0)
    names = list(MODELS)
    for _ in range(40):
        records = []
        for _ in range(generator.randint(1, 12)):
            left, right = generator.sample(names, 2)
            records.append(vote(left, right, generator.choice(["leftvote", "rightvote", "leftvote", "tievote"])))
        for row in rows(records, rounds=50):
            assert row.rating_low >= 0, (row, records)
            decided = row.wins + row.losses > 0
            assert not decided or row.rating_low < row.rating_high, row


def test_the_provisional_marker_goes_away_after_enough_votes():
    records = [vote("A", "B", "leftvote" if i % 3 else "rightvote") for i in range(MIN_BATTLES - 1)]
    assert all(row.provisional for row in rows(records))
    records.append(vote("B", "A", "tievote"))
    table = rows(records)
    assert [row.votes for row in table] == [MIN_BATTLES, MIN_BATTLES]
    assert not any(row.provisional for row in table) and all(row.cells()[-1] == "" for row in table)


def test_the_same_votes_always_give_the_same_table():
    records = [vote("A", "base", "leftvote"), vote("B", "A", "rightvote"), vote("C", "base", "tievote")]
    assert [row.cells() for row in rows(records)] == [row.cells() for row in rows(list(records))]
