"""Tokens: fail fast before training on a missing, invalid or read-only token (C9); never leak one (C10)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest
from phi3_testing import FAKE_TOKEN  # the implicit token (HF_TOKEN) of every test

from phi3_lora_hub.callbacks.hub_push import HubPushCallback
from phi3_lora_hub.hub.errors import HubAuthError
from phi3_lora_hub.hub.tokens import resolve_token
from tests.publish.helpers import FAST_RETRY, AtStep, when_settled


@pytest.fixture
def secret(hub) -> str:
    """A write token of user ``tester`` that only this test knows (registered on the session hub)."""
    token = f"hf_publishsecret{uuid.uuid4().hex}"
    hub.add_token(token, "tester", "write")
    yield token
    hub.revoke_token(token)


def test_token_comes_from_the_argument_then_the_environment_then_the_login(monkeypatch, tmp_path):
    import huggingface_hub.constants

    token_file = tmp_path / "token"
    token_file.write_text("hf_from_login_file_0000000000")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(token_file))
    assert resolve_token("hf_explicit_000000000") == "hf_explicit_000000000"
    assert resolve_token(None) == FAKE_TOKEN  # HF_TOKEN
    monkeypatch.delenv("HF_TOKEN")
    assert resolve_token(None) == "hf_from_login_file_0000000000"


def test_no_token_fails_before_any_data_or_model_is_loaded(hub, make_recipe, hub_repo_id, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-login"))
    recipe = make_recipe(hub_model_id=hub_repo_id)
    with pytest.raises(HubAuthError, match="No Hugging Face token found.*HF_TOKEN.*hf auth login"):
        recipe.train()
    assert recipe.data is None and recipe.trainer is None


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("hf_not_a_token_anyone_issued_0000", r"rejected the token \(401 Unauthorized\).*write access"),
        ("the hub's read token", r"read-only.*write access"),
    ],
)
def test_invalid_and_read_only_tokens_fail_fast_without_showing_the_token(
    hub, make_recipe, push_callback, token, message
):
    token = hub.read_token if token == "the hub's read token" else token
    recipe = make_recipe(push_callback(token=token))
    with pytest.raises(HubAuthError, match=message) as error:
        recipe.train()
    assert token not in str(error.value) and recipe.data is None


def test_a_namespace_the_token_cannot_write_to_fails_fast(hub, push_callback):
    callback = push_callback(repo_id="someone-else/phi3-lora")
    with pytest.raises(HubAuthError, match="may not write to 'someone-else/phi3-lora'"):
        callback.prepare()


def test_the_callback_checks_the_token_when_the_trainer_is_created(hub, small_base, tmp_path):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    callback = HubPushCallback("tester/never-created", token="hf_not_a_token_anyone_issued_0000")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    with pytest.raises(HubAuthError, match="401"):
        Trainer(model=AutoModelForCausalLM.from_pretrained(small_base), args=args, callbacks=[callback])


def test_a_token_revoked_during_training_fails_each_push_once_without_retries(
    hub, make_recipe, push_callback, secret, hub_logs
):
    callback = push_callback(token=secret)
    revoke = AtStep(3, when_settled(callback, lambda: hub.revoke_token(secret)))
    recipe = make_recipe(callback, extra_callbacks=[revoke])
    report = recipe.train().hub
    assert report.pushes[0].status == "pushed"
    later = [p for p in report.pushes[1:] if p.status != "skipped"]
    assert later and all(p.status == "failed" and "HTTP 401" in p.error for p in later)
    assert all(p.attempts <= 1 for p in later)  # a 401 is not retried
    assert not [r for r in hub_logs.records if "retrying" in r.getMessage()]


def test_c10_the_token_appears_in_no_stored_blob_no_file_and_no_log_line(
    hub, hub_mode, make_recipe, push_callback, secret, caplog, capfd
):
    caplog.set_level(logging.DEBUG)  # every logger, huggingface_hub's request logs included
    recipe = make_recipe(push_callback(token=secret, push_resumable_state=True))
    result = recipe.train()
    assert result.hub.ok and result.hub.pushed[0].resumable  # optimizer, scheduler and RNG pickles were pushed too
    output = capfd.readouterr()
    texts = {
        "log records": "\n".join(record.getMessage() for record in caplog.records),
        "stdout": output.out,
        "stderr": output.err,
        "result": f"{result}\n{result.hub.summary()}\n{recipe.hub_callback!r}",
    }
    roots = [hub.root, Path(recipe.config.output_dir), Path(os.environ["HF_HOME"])]
    files = [path for root in roots for path in root.rglob("*") if path.is_file()]
    assert any("blobs" in path.parts for path in files)
    for token in (secret, FAKE_TOKEN):
        assert not [name for name, text in texts.items() if token in text], token
        assert not [path for path in files if token.encode() in path.read_bytes()], token


def test_the_token_never_reaches_the_training_arguments(hub, make_recipe, push_callback, secret):
    recipe = make_recipe(push_callback(token=secret, retry=FAST_RETRY))
    trainer = recipe.build_trainer()  # checks the token with the Hub (on_init_end)
    assert trainer.args.hub_token is None and not trainer.args.push_to_hub
    assert secret not in repr(trainer.args) and secret not in repr(recipe.hub_callback)
