"""The Hub push settings are declared once (``HubPushSettings``); the recipe and the callback take them from there."""

from __future__ import annotations

import dataclasses

import pytest

from phi3_lora_hub.callbacks.hub_push import CALLBACK_SETTINGS, HubPushCallback
from phi3_lora_hub.config.recipe_config import RecipeConfig
from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.hub.settings import HubPushSettings
from phi3_lora_hub.training.recipe_hub import hub_callback_for


def test_every_recipe_hub_setting_is_a_push_setting_with_its_default():
    defaults = {field.name: field.default for field in dataclasses.fields(HubPushSettings)}
    recipe = RecipeConfig().hub_settings()
    assert set(recipe) <= CALLBACK_SETTINGS
    assert recipe == {name: defaults[name] for name in recipe}


def test_the_recipe_passes_every_hub_setting_to_its_callback(tmp_path):
    template = tmp_path / "card.md.j2"
    template.write_text("{{ repo_id }}")
    config = RecipeConfig(
        hub_model_id="me/adapter",
        hub_private=True,
        hub_branch_template="ckpt-{step}",
        hub_push_resumable_state=True,
        hub_flush_timeout=5.0,
        hub_on_push_failure="raise",
        hub_card_template=str(template),
        hub_card_license="apache-2.0",
    )
    settings = hub_callback_for(config, []).settings
    assert settings.repo_id == "me/adapter"
    assert {name: getattr(settings, name) for name in config.hub_settings()} == config.hub_settings()


def test_the_callback_refuses_an_unknown_setting_and_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown settings \['privat'\].*'private'"):
        HubPushCallback("me/adapter", privat=True)


def test_the_callback_takes_its_timeouts_and_a_path_as_card_template(tmp_path):
    template = tmp_path / "card.md.j2"
    template.write_text("{{ repo_id }}")
    callback = HubPushCallback("me/adapter", request_timeout=7, card_template=template, retry=None)
    assert callback.settings.timeouts.read == 7 and callback.settings.timeouts.connect == 10.0
    assert callback.settings.card_template == str(template)
