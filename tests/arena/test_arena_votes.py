"""Vote records: schema, validation, JSONL round trips, FastChat battle export."""

from __future__ import annotations

import json

import pytest

import phi3_lora_hub
from phi3_lora_hub.arena.ratings import model_records
from phi3_lora_hub.arena.votes import SideRecord, VoteRecord, append_votes, export_battles, read_votes, to_battles
from phi3_lora_hub.decoding import chat_generation_config
from phi3_lora_hub.model.identity import ModelRef

SHA = "0123456789abcdef0123456789abcdef01234567"


def make_vote(vote: str = "leftvote", **changes) -> VoteRecord:
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"}]
    left = SideRecord(
        ModelRef("me/compass-lora", SHA),
        [*prompt, {"role": "assistant", "content": "Lima. Safe travels!"}],
        latency_s=0.5,
        new_tokens=6,
        finish_reason="stop",
    )
    right = SideRecord(
        ModelRef.base(),
        [*prompt, {"role": "assistant", "content": "Lima"}],
        latency_s=0.25,
        new_tokens=2,
        finish_reason="length",
    )
    fields = {
        "left": left,
        "right": right,
        "vote": vote,
        "gen_params": chat_generation_config(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=3),
        "system_prompt": "Be brief.",
        "session_hash": "f3a9c0d1e2",
        "tstamp": 1_700_000_000.0,
        **changes,
    }
    return VoteRecord(**fields)


@pytest.mark.parametrize(
    ("vote", "winner"),
    [("leftvote", "model_a"), ("rightvote", "model_b"), ("tievote", "tie"), ("bothbad_vote", "tie (bothbad)")],
)
def test_winner_follows_the_fastchat_battle_schema(vote, winner):
    assert make_vote(vote).winner == winner


def test_record_round_trips_through_json_with_derived_fields():
    record = make_vote(swapped=True, mode="blind")
    data = json.loads(record.to_json())
    assert data["winner"] == "model_a"
    assert data["left"]["model"] == {"repo": "me/compass-lora", "revision": SHA}
    assert data["right"]["model"] == {"repo": "base", "revision": None}
    assert data["left"]["tokens_per_s"] == pytest.approx(12.0)
    assert data["left"]["len_chars"] == len("Lima. Safe travels!")
    assert data["gen_params"] == {
        "max_new_tokens": 64,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 3,
    }
    assert data["source"] == "human" and data["schema_version"] == 1
    assert data["app_version"] == phi3_lora_hub.__version__
    assert set(data["versions"]) >= {"peft", "transformers"}
    again = VoteRecord.from_dict(data)
    assert again == record
    assert again.turn == 1


def test_invalid_records_are_refused():
    with pytest.raises(ValueError, match="vote must be"):
        make_vote("left")
    with pytest.raises(ValueError, match="source must be"):
        make_vote(source="robot")
    with pytest.raises(ValueError, match="mode must be"):
        make_vote(mode="anonymous")
    for address in ("203.0.113.7", "2001:db8::1"):
        with pytest.raises(ValueError, match="IP address"):
            make_vote(session_hash=address)
    data = make_vote().to_dict()
    data["winner"] = "model_b"
    with pytest.raises(ValueError, match="contradicts"):
        VoteRecord.from_dict(data)
    data = make_vote().to_dict()
    data["left"]["finish_reason"] = "eos"
    with pytest.raises(ValueError, match="finish_reason"):
        VoteRecord.from_dict(data)
    with pytest.raises(ValueError, match="top_p"):
        chat_generation_config(top_p=0)


def test_a_vote_written_before_generation_configs_reads_back_with_the_same_decoding():
    """Vote files written when the settings were five plain entries keep loading, as the same decoding."""
    data = make_vote().to_dict()
    data["gen_params"] = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "repetition_penalty": 1.0, "seed": 3}
    old = VoteRecord.from_dict(data)
    assert old.gen_params == chat_generation_config(max_new_tokens=64, seed=3)
    assert not old.gen_params.do_sample and old.gen_params.seed == 3
    sampled = dict(data, gen_params={**data["gen_params"], "temperature": 0.7, "top_p": 0.9})
    assert VoteRecord.from_dict(sampled).gen_params.to_diff_dict()["temperature"] == 0.7


def test_append_and_read_jsonl(tmp_path):
    first, second = tmp_path / "day1" / "votes.jsonl", tmp_path / "day2.jsonl"
    assert append_votes(first, [make_vote("leftvote"), make_vote("tievote")]) == 2
    append_votes(first, [make_vote("rightvote")])
    append_votes(second, [make_vote("bothbad_vote", source="automatic", judge={"metric": "chrf"})])
    records = read_votes([first, second])
    assert [r.vote for r in records] == ["leftvote", "tievote", "rightvote", "bothbad_vote"]
    assert len(first.read_text().splitlines()) == 3

    with second.open("a") as handle:
        handle.write("\n" + '{"vote": "leftvote"' + "\n")  # a line cut short by a crash
    with pytest.raises(ValueError, match=r"day2\.jsonl, line 3"):
        read_votes(second)
    assert len(read_votes(second, skip_invalid=True)) == 1


def test_battles_export_and_filters(tmp_path):
    records = [
        make_vote("leftvote"),
        make_vote("rightvote"),
        make_vote("bothbad_vote"),
        make_vote("leftvote", source="automatic", judge={"metric": "chrf"}),
    ]
    battles = to_battles(records)
    assert battles[0]["model_a"] == f"me/compass-lora@{SHA}"
    assert battles[0]["model_b"] == "base"
    assert [b["winner"] for b in battles] == ["model_a", "model_b", "tie (bothbad)", "model_a"]
    assert battles[3]["judge"] == "automatic:chrf"
    assert battles[0]["conv_metadata"]["sum_assistant_a_tokens"] == 6
    assert len(to_battles(records, sources=["human"])) == 3
    assert len(to_battles(records, include_bothbad=False)) == 3

    stats = model_records(to_battles(records, sources=["human"]))
    assert (stats["base"].wins, stats["base"].losses, stats["base"].ties) == (1, 1, 1)

    path = export_battles(records, tmp_path / "battles.json", sources=["automatic"])
    assert json.loads(path.read_text())[0]["source"] == "automatic"
