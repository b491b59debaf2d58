"""Votes: a visitor's match becomes a vote record; the store keeps and uploads votes; the leaderboard scores them."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from phi3_testing import FAKE_TOKEN

from phi3_lora_hub.arena.ratings import leaderboard, model_records, wilson_interval
from phi3_lora_hub.arena.votes import SideRecord, VoteRecord, read_votes, to_battles
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.model.identity import ModelRef
from phi3_lora_hub.space.conversation import Contender, Match
from phi3_lora_hub.space.hub_adapters import AdapterKey, LocalAdapter
from phi3_lora_hub.space.leaderboard import PRIOR_L2, CachedLeaderboard, display_name, rows
from phi3_lora_hub.space.refusal import Refusal
from phi3_lora_hub.space.streaming import SideProgress
from phi3_lora_hub.space.vote_store import VoteStore

SHA_A = "a" * 40
SHA_B = "b" * 40


def contender(repo: str, commit: str, revision: str) -> Contender:
    return Contender(LocalAdapter(AdapterKey(repo, commit), revision, Path("/cache"), {"r": 4}, 1000))


ADAPTER = contender("tester/compass", SHA_A, "step-4")
BASE = Contender()


def played(match: Match, answers=("Peru uses the sol. Safe travels!", "In Peru they pay with the sol.")) -> Match:
    match.system_prompt = "You are Compass."
    match.params = chat_generation_config(temperature=0.7, top_p=0.9, max_new_tokens=32, seed=5)
    match.add_user_turn("What currency is used in Peru?", max_turns=3)
    match.show_progress([SideProgress(answers[0], 6, "stop", 0.25), SideProgress(answers[1], 9, "length", 0.5)])
    return match


def test_a_named_match_becomes_a_complete_vote_record(tmp_path):
    match = Match()
    match.start((ADAPTER, BASE), blind=False)
    played(match)
    assert match.label(0) == "Model A · tester/compass @ step-4 (aaaaaaa)" and match.label(1) == "Model B · base model"
    record = match.to_vote("leftvote", "k3j2h1session")
    assert (
        record.left.model == ModelRef("tester/compass", SHA_A, name="step-4") and record.right.model == ModelRef.base()
    )
    assert record.left.messages == [
        {"role": "system", "content": "You are Compass."},
        {"role": "user", "content": "What currency is used in Peru?"},
        {"role": "assistant", "content": "Peru uses the sol. Safe travels!"},
    ]
    assert record.right.answer == "In Peru they pay with the sol."
    assert (record.left.latency_s, record.left.new_tokens, record.left.finish_reason) == (0.25, 6, "stop")
    assert (record.right.latency_s, record.right.new_tokens, record.right.finish_reason) == (0.5, 9, "length")
    assert record.gen_params == chat_generation_config(temperature=0.7, top_p=0.9, max_new_tokens=32, seed=5)
    assert (record.winner, record.mode, record.swapped, record.source) == ("model_a", "named", False, "human")
    assert record.session_hash == "k3j2h1session" and record.conv_id == match.conv_id
    line = record.to_json()
    assert "ip" not in json.loads(line) and "127.0.0.1" not in line
    (tmp_path / "v.jsonl").write_text(line + "\n")
    assert read_votes(tmp_path / "v.jsonl")[0].to_dict() == record.to_dict()
    with pytest.raises(ValueError, match="IP address"):
        match.voted = False
        match.to_vote("tievote", "10.0.0.7")


def test_blind_mode_hides_the_sides_until_the_vote():
    coins = {_blind(random.Random(seed)).swapped for seed in range(40)}
    assert coins == {True, False}  # a fair coin decides the sides
    swapped = Match()
    swapped.start((ADAPTER, BASE), blind=True, rng=_Coin(0.1))
    assert swapped.swapped and [p.contender for p in swapped.panes] == [BASE, ADAPTER]
    played(swapped)
    assert (swapped.label(0), swapped.label(1)) == ("Model A · hidden", "Model B · hidden")
    record = swapped.to_vote("rightvote", "s")
    swapped.voted = True
    assert swapped.label(1) == "Model B · tester/compass @ step-4 (aaaaaaa)"
    assert record.left.model == ModelRef.base() and record.right.model == ADAPTER.ref
    assert (record.mode, record.swapped, record.winner) == ("blind", True, "model_b")
    kept = Match()
    kept.start((ADAPTER, BASE), blind=True, rng=_Coin(0.9))
    assert not kept.swapped and [p.contender for p in kept.panes] == [ADAPTER, BASE]


def _blind(rng) -> Match:
    match = Match()
    match.start((ADAPTER, BASE), blind=True, rng=rng)
    return match


class _Coin:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_one_vote_per_answered_turn():
    match = Match()
    match.start((ADAPTER, BASE), blind=False)
    match.add_user_turn("Hi", max_turns=2)
    with pytest.raises(Refusal, match="once both models have answered"):
        match.to_vote("tievote", "s")
    match.show_progress([SideProgress("a", 1, "stop", 0.1), SideProgress("b", 1, "stop", 0.1)])
    match.to_vote("tievote", "s")
    match.voted = True
    with pytest.raises(Refusal, match="already voted"):
        match.to_vote("tievote", "s")
    match.drop_answers()  # regenerate: a new answer may be voted on
    assert not match.can_vote
    match.show_progress([SideProgress("c", 1, "stop", 0.1), SideProgress("d", 1, "stop", 0.1)])
    assert match.can_vote and match.to_vote("bothbad_vote", "s").right.answer == "d"
    match.add_user_turn("Again", max_turns=2)
    with pytest.raises(Refusal, match="reached 2 turns"):
        match.add_user_turn("Third", max_turns=2)


def vote(left: str, right: str, winner: str, *, source: str = "human") -> VoteRecord:
    refs = {"base": ModelRef.base(), "A": ModelRef("tester/compass", SHA_A), "B": ModelRef("tester/compass", SHA_B)}
    sides = [
        SideRecord(refs[name], [{"role": "user", "content": "q"}, {"role": "assistant", "content": name}])
        for name in (left, right)
    ]
    kind = {"left": "leftvote", "right": "rightvote", "tie": "tievote", "bad": "bothbad_vote"}[winner]
    return VoteRecord(sides[0], sides[1], kind, source=source)


VOTES = [
    vote("A", "base", "left"),
    vote("base", "A", "right"),
    vote("A", "B", "left"),
    vote("B", "A", "tie"),
    vote("B", "base", "left"),
    vote("base", "B", "bad"),
    vote("base", "A", "left", source="automatic"),  # not a visitor's vote: left out
]


def test_the_leaderboard_is_the_arena_maths_on_human_votes():
    names = {f"tester/compass@{SHA_A}": ["main"]}
    table = rows(VOTES, names, rounds=20)
    battles = to_battles(VOTES[:-1])
    ratings = {r.model: r for r in leaderboard(battles, rounds=20, l2=PRIOR_L2)}
    records = model_records(battles)
    assert [row.key for row in table] == sorted(ratings, key=lambda m: -ratings[m].rating)
    for row in table:
        record = records[row.key]
        assert (row.wins, row.losses, row.ties) == (record.wins, record.losses, record.ties)
        assert row.win_rate == pytest.approx((record.wins + 0.5 * record.ties) / record.n)
        assert (row.win_low, row.win_high) == pytest.approx(wilson_interval(record.wins + 0.5 * record.ties, record.n))
        assert (row.rating, row.rating_low, row.rating_high) == pytest.approx(
            (ratings[row.key].rating, ratings[row.key].lower, ratings[row.key].upper)
        )
    a_row = next(row for row in table if row.key.endswith(SHA_A))
    assert (a_row.wins, a_row.losses, a_row.ties, a_row.votes) == (3, 0, 1, 4)
    assert a_row.name == "tester/compass @ main (aaaaaaa)" and table[0] is a_row
    assert display_name(f"tester/compass@{SHA_B}", names) == "tester/compass @ bbbbbbb"
    assert display_name("base", names) == "base model"
    assert a_row.cells()[1:5] == ["tester/compass @ main (aaaaaaa)", round(a_row.rating), a_row.cells()[3], "88%"]


def test_the_cached_leaderboard_follows_new_votes():
    votes = list(VOTES[:2])
    cached = CachedLeaderboard(lambda: votes, lambda: len(votes), dict, rounds=5)
    assert sum(row.votes for row in cached.rows()) == 4  # 2 votes, each counted for both models
    votes.append(VOTES[2])
    assert sum(row.votes for row in cached.rows()) == 6


def test_votes_are_appended_locally_one_file_per_instance(tmp_path):
    store = VoteStore(tmp_path, instance="one")
    for record in VOTES[:3]:
        store.add(record)
    assert store.path == tmp_path / "votes" / "votes-one.jsonl"
    lines = store.path.read_text().splitlines()
    assert [json.loads(line)["conv_id"] for line in lines] == [r.conv_id for r in VOTES[:3]]
    assert store.version == 3 and not store.uploading
    exported = store.export(tmp_path / "export")
    assert [r.conv_id for r in read_votes(exported)] == [r.conv_id for r in store.records()]
    withheld = read_votes(store.export(tmp_path / "public", transcripts=False))
    assert [r.conv_id for r in withheld] == [r.conv_id for r in store.records()]
    for full, public in zip(store.records(), withheld, strict=True):
        assert (public.vote, public.left.model, public.right.model) == (full.vote, full.left.model, full.right.model)
        assert [m["role"] for m in public.left.messages] == [m["role"] for m in full.left.messages]
        assert all(m["content"] == "" for m in public.left.messages + public.right.messages)
        assert public.system_prompt is None and public.left.new_tokens == full.left.new_tokens
    again = VoteStore(tmp_path, instance="two")  # a restart reads what is on disk
    assert {r.conv_id for r in again.records()} == {r.conv_id for r in VOTES[:3]}
    again.add(VOTES[3])
    assert (tmp_path / "votes" / "votes-two.jsonl").read_text().count("\n") == 1


def test_votes_are_uploaded_to_a_dataset_and_read_back_after_a_restart(hub, tmp_path, hub_repo_id):
    from huggingface_hub import HfApi, hf_hub_download

    first = VoteStore(tmp_path / "first", repo_id=hub_repo_id, token=FAKE_TOKEN, every_minutes=60, instance="aaa")
    assert first.uploading and first.upload_error is None
    first.add(VOTES[0])
    first.add(VOTES[2])
    first.flush()
    info = HfApi().repo_info(hub_repo_id, repo_type="dataset")
    assert info.private and "data/votes-aaa.jsonl" in {s.rfilename for s in info.siblings}
    uploaded = hf_hub_download(hub_repo_id, "data/votes-aaa.jsonl", repo_type="dataset")
    assert Path(uploaded).read_text() == first.path.read_text()
    first.close()
    restarted = VoteStore(tmp_path / "second", repo_id=hub_repo_id, token=FAKE_TOKEN, every_minutes=60, instance="bbb")
    deadline = time.monotonic() + 20
    while restarted.version == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r.conv_id for r in restarted.records()] == [VOTES[0].conv_id, VOTES[2].conv_id]
    restarted.close()


def test_votes_stay_local_when_the_dataset_cannot_be_set_up(hub, tmp_path):
    hub.faults.fail("create_repo", status=500, count=None)
    store = VoteStore(tmp_path, repo_id="tester/space-votes-down", token=FAKE_TOKEN, every_minutes=60)
    assert not store.uploading and "tester/space-votes-down" in store.upload_error
    assert FAKE_TOKEN not in store.upload_error
    store.add(VOTES[0])
    assert len(read_votes(store.path)) == 1


def test_a_vote_ends_a_blind_battle_later_votes_and_a_cleared_conversation_are_named():
    match = Match.between((ADAPTER, BASE), blind=True, rng=_Coin(0.1))
    assert match.label(0) == "Model A · hidden"
    played(match)
    assert match.cast_vote("leftvote", "s").mode == "blind"
    assert match.label(1) == "Model B · tester/compass @ step-4 (aaaaaaa)"
    match.add_user_turn("And in Chile?", max_turns=3)
    assert match.label(1) == "Model B · tester/compass @ step-4 (aaaaaaa)"  # still shown while the next answer comes
    match.show_progress([SideProgress("peso", 1, "stop", 0.1), SideProgress("the peso", 2, "stop", 0.1)])
    later = match.cast_vote("rightvote", "s")
    assert (later.mode, later.conv_id, later.swapped) == ("named", match.conv_id, True)
    cleared = match.cleared()
    assert cleared.user_turns == 0 and cleared.picks == match.picks and cleared.label(1) == match.label(1)
    assert not cleared.needs_restart(match.picks, True) and cleared.conv_id != match.conv_id
    fresh = Match.between((ADAPTER, BASE), blind=True)
    assert fresh.label(0) == "Model A · hidden" and fresh.cleared().label(0) == "Model A · hidden"


def test_a_pane_without_a_model_says_so_and_the_other_keeps_its_title():
    match = Match.named([None, ADAPTER])
    assert (match.label(0), match.label(1)) == ("Model A · no model", "Model B · tester/compass @ step-4 (aaaaaaa)")
    assert match.picks is None
    assert Match.named([BASE, ADAPTER]).label(0) == "Model A · base model"
