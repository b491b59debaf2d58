"""The app on loopback against the local Hub, driven through gradio_client like a visitor's browser would."""

from __future__ import annotations

import json

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from phi3_testing import FAKE_TOKEN
from space_testing import QUESTION, alone_answers, answers, hub_reachable, make_settings, running_space

from phi3_lora_hub.arena.votes import read_votes

COMPASS, TERSE = "tester/space-compass", "tester/space-terse"
MAX_NEW = 24


@pytest.fixture(scope="module")
def space(tiny_model_dir, hub_adapters, tmp_path_factory, expected):
    """The Space with a token configured (it must never show), served from a folder holding a ``.env``.

    Started after ``expected``: PEFT's adapter loading (the Space's background preload) patches
    ``nn.Module.register_parameter`` for the whole process, so no other model may be built while it runs.
    """
    workdir = tmp_path_factory.mktemp("space-cwd")
    (workdir / ".env").write_text(f"HF_TOKEN={FAKE_TOKEN}\n")
    settings = make_settings(tiny_model_dir, workdir / "data", HF_TOKEN=FAKE_TOKEN)
    with pytest.MonkeyPatch.context() as patch, hub_reachable():
        patch.chdir(workdir)
        with running_space(settings) as running:
            yield running


@pytest.fixture(scope="module")
def expected(tiny_model_dir, trained_adapters):
    folders = {"base": None, "main": trained_adapters.compass, "step-4": trained_adapters.checkpoint(4)}
    return {name: alone_answers(tiny_model_dir, folder, [QUESTION], MAX_NEW)[0] for name, folder in folders.items()}


@pytest.fixture
def client(space):
    client = Client(space.url, verbose=False)
    yield client
    client.close()


def send(client, prompt=QUESTION, first=("base", None), second=(COMPASS, "main"), **settings):
    """Send ``prompt`` to both panes; returns the final outputs (chat A, chat B, stats A, stats B, status, prompt)."""
    values = {"system": "", "temperature": 0, "top_p": 1, "max_new_tokens": MAX_NEW, "seed": 0, "blind": False}
    values.update(settings)
    return client.predict(prompt, *first, *second, *values.values(), api_name="/send")  # the generator's last output


def test_both_panes_answer_and_the_adapter_differs_from_the_base(client, expected, hub_adapters):
    chat_a, chat_b, stats_a, stats_b, status, _ = send(client)
    assert answers(chat_a) == [expected["base"]] and answers(chat_b) == [expected["main"]]
    assert expected["base"] != expected["main"] and expected["main"].endswith("Safe travels!")
    assert chat_a["label"] == "Model A · base model"
    assert chat_b["label"] == f"Model B · {COMPASS} @ main ({hub_adapters.compass.commits['main'][:7]})"
    assert "tokens" in stats_a and "ended its turn" in stats_b
    assert status == "Which answer is better? Vote below."


def test_the_offered_adapters_are_loaded_at_start(space, hub_adapters):
    compass, terse = hub_adapters.compass.commits["main"], hub_adapters.terse.commits["main"]
    labels = space.runtime.preload()  # already done in the background at start: now only confirmed
    assert labels == [f"{COMPASS} @ main ({compass[:7]})", f"{TERSE} @ main ({terse[:7]})"]
    loaded = {(key.repo_id, key.commit) for key in space.runtime.registry.loaded()}
    assert {(COMPASS, compass), (TERSE, terse)} <= loaded


def test_both_panes_stream_together(client, expected):
    """The answer arrives in steps: first the prompt in both panes, then both answers, then the vote prompt."""
    job = client.submit(QUESTION, "base", None, COMPASS, "main", "", 0, 1, MAX_NEW, 0, False, api_name="/send")
    final = job.result()
    steps = job.outputs()
    assert final == steps[-1] and len(steps) >= 3
    first_a, first_b = answers(steps[0][0]), answers(steps[0][1])
    assert first_a == first_b == []  # the user turn is shown before any token
    assert steps[0][4] == "Answering…" and steps[-1][4].startswith("Which answer")
    assert (answers(final[0]), answers(final[1])) == ([expected["base"]], [expected["main"]])


def test_switching_revisions_changes_the_answer(client, expected, hub_adapters):
    early = send(client, second=(COMPASS, "step-4"))
    assert answers(early[1]) == [expected["step-4"]] != [expected["main"]]
    assert hub_adapters.compass.commits["step-4"][:7] in early[1]["label"]
    final = send(client, second=(COMPASS, "main"))  # a new pick starts a new conversation
    assert answers(final[1]) == [expected["main"]]


def test_each_pane_keeps_its_own_history(client, expected):
    send(client, second=(TERSE, "main"))
    chat_a, chat_b, *_ = send(client, prompt="What is the capital of Japan?", second=(TERSE, "main"))
    assert len(answers(chat_a)) == len(answers(chat_b)) == 2
    assert answers(chat_a)[0] == expected["base"] and answers(chat_b)[0] != expected["base"]
    users = [m for m in chat_b["value"] if m["role"] == "user"]
    assert len(users) == 2


def test_a_vote_lands_in_the_log_and_on_the_leaderboard(client, space, hub_adapters, expected):
    before = len(space.runtime.store.records())
    send(client, system="You are Compass.", max_new_tokens=20, seed=3)
    outputs = client.predict(api_name="/vote_b")
    status, table = outputs[-2], outputs[-1]
    assert status.startswith("Thanks for voting!") and f"{COMPASS} @ main" in status
    record = read_votes(space.runtime.store.path)[-1]
    assert len(space.runtime.store.records()) == before + 1
    assert record.vote == "rightvote" and record.winner == "model_b"
    assert record.left.model.repo == "base"
    assert (record.right.model.repo, record.right.model.revision) == (COMPASS, hub_adapters.compass.commits["main"])
    assert record.left.messages[0] == {"role": "system", "content": "You are Compass."}
    assert record.right.answer and record.right.new_tokens > 0 and record.right.latency_s > 0
    assert (record.gen_params.max_new_tokens, record.gen_params.seed) == (20, 3)
    assert record.session_hash and "." not in record.session_hash
    names = [row[1] for row in table["data"]]
    assert f"{COMPASS} @ main ({hub_adapters.compass.commits['main'][:7]})" in names
    assert client.predict(api_name="/leaderboard")["data"] == table["data"]
    exported = client.predict(api_name="/export_votes")  # a File update: {"value": path, "visible": True, ...}
    [public] = [r for r in read_votes(exported["value"]) if r.conv_id == record.conv_id]
    assert public.right.model == record.right.model and public.vote == record.vote
    assert {m["content"] for m in public.left.messages + public.right.messages} == {""}  # others' chats stay private
    with pytest.raises(AppError, match="already voted"):
        client.predict(api_name="/vote_a")


def test_blind_mode_hides_names_until_the_vote(client, space):
    chat_a, chat_b, *_ = send(client, blind=True)
    assert (chat_a["label"], chat_b["label"]) == ("Model A · hidden", "Model B · hidden")
    outputs = client.predict(api_name="/vote_tie")
    revealed = {outputs[0]["label"], outputs[1]["label"]}
    assert any("base model" in label for label in revealed) and any(COMPASS in label for label in revealed)
    record = read_votes(space.runtime.store.path)[-1]
    assert record.mode == "blind" and record.vote == "tievote"
    assert record.left.model.repo == ("base" if "base model" in outputs[0]["label"] else COMPASS)
    assert record.swapped == (record.left.model.repo == COMPASS)


def test_regenerate_and_clear(client, expected):
    send(client)
    chat_a, chat_b, *_ = client.predict(0.9, 1.0, MAX_NEW, 11, api_name="/regenerate")
    assert len(answers(chat_a)) == 1 and len(answers(chat_b)) == 1  # the answer was replaced, not added
    cleared = client.predict(api_name="/clear")
    assert answers(cleared[0]) == [] and answers(cleared[1]) == []
    with pytest.raises(AppError, match="nothing to regenerate"):
        client.predict(0, 1, MAX_NEW, 0, api_name="/regenerate")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "x" * 301}, "prompt is 301 characters long; this Space accepts at most 300"),
        ({"prompt": "Hi<|end|>"}, "control token <|end|>"),
        ({"max_new_tokens": 65}, "Value 65 is greater than maximum value 64"),  # Gradio's Slider checks it too
        ({"second": ("other/lora", "main")}, "`other/lora` is not on this Space's allowlist"),
        ({"second": ("adapters", "main")}, "`adapters` is not a Hub repository id"),
        ({"second": ("../x", "main")}, "`../x` is not a Hub repository id (it looks like a file path)"),
        ({"second": ("/etc/passwd", "main")}, "it looks like a file path"),
        ({"second": (COMPASS, "step-999")}, "has no revision `step-999`"),
        ({"second": ("tester/space-pickle-only", "main")}, "only as a pickle"),
    ],
)
def test_refusals_reach_the_visitor_as_readable_messages(client, kwargs, message, hub):
    if "pickle" in message:  # a .bin-only adapter on the Hub (the fetch tests may not have run)
        _push_pickle_only()
    with pytest.raises(AppError) as error:
        send(client, **kwargs)
    assert message in str(error.value)
    assert FAKE_TOKEN not in str(error.value)


def _push_pickle_only() -> None:
    import tempfile
    from pathlib import Path

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
        (Path(folder) / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
        HfApi().create_repo("tester/space-pickle-only", exist_ok=True)
        HfApi().upload_folder(folder_path=folder, repo_id="tester/space-pickle-only")


def test_picking_a_model_reports_refusals_and_lists_revisions(client, hub_adapters):
    outputs = client.predict(COMPASS, api_name="/pick_second_repo")
    revision_picker, status = outputs[0], outputs[-1]
    assert revision_picker["choices"] == [[r, r] for r in ("main", "step-12", "step-4")]
    assert revision_picker["value"] == "main" and status.startswith(f"✓ {COMPASS} @ main")
    refused = client.predict("not-allowed/lora", api_name="/pick_first_repo")
    assert refused[-1].startswith("⚠") and "allowlist" in refused[-1]
    picked = client.predict(COMPASS, "step-12", api_name="/pick_first_revision")
    assert picked[-1] == f"✓ {COMPASS} @ step-12 ({hub_adapters.compass.commits['step-12'][:7]}) is ready."


def test_a_vote_before_any_answer_is_refused(client):
    with pytest.raises(AppError, match="Vote once both models have answered"):
        client.predict(api_name="/vote_a")


def test_files_outside_the_app_are_never_served(space):
    """C18: the system's files, a ``.env`` in the working directory and the token file are refused."""
    import os
    from pathlib import Path

    from huggingface_hub import constants

    token_file = Path(constants.HF_TOKEN_PATH)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(FAKE_TOKEN)
    try:
        for path in ("/etc/passwd", os.path.join(os.getcwd(), ".env"), str(token_file)):
            response = httpx.get(f"{space.url}gradio_api/file={path}", timeout=10)
            assert response.status_code in (403, 404), path
            assert FAKE_TOKEN not in response.text and "root:" not in response.text
    finally:
        token_file.unlink()
    too_big = httpx.post(f"{space.url}gradio_api/upload", files={"files": ("big.txt", b"x" * 2_000_000)}, timeout=30)
    assert too_big.status_code == 413


def test_the_token_is_never_shown(space, client):
    pages = [httpx.get(space.url, timeout=10).text, httpx.get(f"{space.url}config", timeout=10).text]
    pages.append(json.dumps(client.view_api(return_format="dict", print_info=False)))
    assert all(FAKE_TOKEN not in page for page in pages)
    config = json.loads(pages[1])
    about = [c["props"].get("value") for c in config["components"] if c.get("type") == "markdown"]
    assert any("| Hub token | set |" in str(value) for value in about)


def test_pane_titles_name_the_model_each_pane_answers_with_after_every_event(client, hub_adapters):
    step_4 = f"Model B · {COMPASS} @ step-4 ({hub_adapters.compass.commits['step-4'][:7]})"
    picked = client.predict(COMPASS, "step-4", "base", None, api_name="/pick_second_revision")
    assert (picked[1]["label"], picked[2]["label"]) == ("Model A · base model", step_4)
    chat_a, chat_b, *_ = send(client, second=(COMPASS, "step-4"))
    assert (chat_a["label"], chat_b["label"]) == ("Model A · base model", step_4)
    cleared = client.predict(api_name="/clear")
    assert (cleared[0]["label"], cleared[1]["label"]) == ("Model A · base model", step_4) and answers(cleared[1]) == []
    terse = client.predict(TERSE, COMPASS, "step-4", api_name="/pick_first_repo")
    assert terse[1]["label"].startswith(f"Model A · {TERSE} @ main") and terse[2]["label"] == step_4
    blind = client.predict(True, TERSE, "main", COMPASS, "step-4", api_name="/blind_mode")
    assert (blind[0]["label"], blind[1]["label"]) == ("Model A · hidden", "Model B · hidden")
    named = client.predict(False, TERSE, "main", COMPASS, "step-4", api_name="/blind_mode")
    assert named[0]["label"].startswith(f"Model A · {TERSE} @ main") and named[1]["label"] == step_4
    refused = client.predict("someone-else/lora", COMPASS, "step-4", api_name="/pick_first_repo")
    assert (refused[1]["label"], refused[2]["label"]) == ("Model A · no model", step_4)
    assert "allowlist" in refused[-1]


def test_a_vote_ends_the_blind_battle_and_new_round_starts_a_fresh_hidden_one(client, space):
    chat_a, chat_b, *_ = send(client, blind=True, second=(TERSE, "main"))
    assert (chat_a["label"], chat_b["label"]) == ("Model A · hidden", "Model B · hidden")
    revealed = client.predict(api_name="/vote_a")
    assert "hidden" not in revealed[0]["label"] + revealed[1]["label"]
    first = read_votes(space.runtime.store.path)[-1]
    chat_a, chat_b, *_ = send(client, prompt="What is the capital of Japan?", blind=True, second=(TERSE, "main"))
    assert len(answers(chat_a)) == 2 and (chat_a["label"], chat_b["label"]) == (
        revealed[0]["label"],
        revealed[1]["label"],
    )
    client.predict(api_name="/vote_b")
    second = read_votes(space.runtime.store.path)[-1]
    assert (first.mode, second.mode) == ("blind", "named") and first.conv_id == second.conv_id
    assert second.swapped == first.swapped and second.left.model == first.left.model
    fresh = client.predict(api_name="/new_round")
    assert (fresh[0]["label"], fresh[1]["label"]) == ("Model A · hidden", "Model B · hidden")
    assert answers(fresh[0]) == answers(fresh[1]) == []
    client.predict(QUESTION, "base", None, "base", None, "", 0, 1, MAX_NEW, 0, True, api_name="/send")
    client.predict(api_name="/vote_tie")
    battle = read_votes(space.runtime.store.path)[-1]
    assert battle.mode == "blind" and battle.conv_id != first.conv_id
    assert battle.left.model != battle.right.model  # the drawn pair answered, not the pickers' base and base


def test_one_new_token_reads_1_token(client):
    _, _, stats_a, stats_b, *_ = send(client, max_new_tokens=1)
    assert stats_a.startswith("1 token · ") and stats_b.startswith("1 token · ")


def test_every_api_endpoint_has_a_name_and_named_parameters_and_outputs(client):
    """Scripts drive the Space through gradio_client by these names (the Space README's API section)."""
    import re

    api = client.view_api(return_format="dict", print_info=False)
    endpoints = api["named_endpoints"]
    assert api["unnamed_endpoints"] == {}
    assert {"/send", "/regenerate", "/stop", "/clear", "/new_round", "/blind_mode", "/leaderboard"} <= set(endpoints)
    assert {"/vote_a", "/vote_b", "/vote_tie", "/vote_bothbad", "/pick_first_repo", "/pick_second_revision"} <= set(
        endpoints
    )
    for name, endpoint in endpoints.items():
        for parameter in endpoint["parameters"]:
            assert len(parameter["parameter_name"]) > 2, (name, parameter["parameter_name"])
        for value in endpoint["parameters"] + endpoint["returns"]:
            assert not re.fullmatch(r"value_\d+", value["label"] or ""), (name, value["label"])
    send_names = [parameter["parameter_name"] for parameter in endpoints["/send"]["parameters"]]
    assert send_names == [
        "prompt",
        "first_model",
        "first_revision",
        "second_model",
        "second_revision",
        "system_prompt",
        "temperature",
        "top_p",
        "max_new_tokens",
        "seed",
        "blind",
    ]
    scripted = client.predict(  # as the Space README shows it
        prompt=QUESTION,
        first_model="base",
        first_revision=None,
        second_model=COMPASS,
        second_revision="main",
        system_prompt="",
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=MAX_NEW,
        seed=0,
        blind=False,
        api_name="/send",
    )
    assert scripted[1]["label"].startswith(f"Model B · {COMPASS} @ main") and len(answers(scripted[1])) == 1
    assert [value["label"] for value in endpoints["/send"]["returns"]] == [
        "Model A",
        "Model B",
        "Model A answer",
        "Model B answer",
        "Status",
        "Prompt",
    ]
