"""Branch names of checkpoints (C19): '/' and other names that clients and servers route differently are refused."""

from __future__ import annotations

import pytest

from phi3_lora_hub.errors import ConfigError
from phi3_lora_hub.hub.naming import (
    branch_name,
    step_of_branch,
    validate_branch_name,
    validate_branch_template,
)


@pytest.mark.parametrize("template", ["step-{step}", "ckpt_{step}", "run1.step-{step}", "{step}-lora"])
def test_valid_templates_render_and_parse_back(template):
    validate_branch_template(template)
    for step in (0, 7, 500, 123456):
        assert step_of_branch(template, branch_name(template, step)) == step


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("ckpt/step-{step}", "'/' is refused"),
        ("refs/pr/{step}", "'/' is refused"),
        ("step-{step}-{step}", "exactly once"),
        ("step", "exactly once"),
        ("step-{step}-{epoch}", "only use the '{step}' field"),
        ("step {step}", "letters, digits"),
        ("-step-{step}", "starting with a letter or digit"),
        ("step..{step}", "'..'"),
        ("step-{step}.lock", "'.lock'"),
    ],
)
def test_invalid_templates_are_refused_with_the_reason(template, reason):
    with pytest.raises(ConfigError, match=None) as error:
        validate_branch_template(template)
    assert reason in str(error.value)


def test_branch_names_that_look_like_commits_or_have_slashes_are_refused():
    with pytest.raises(ConfigError, match="looks like a commit id"):
        validate_branch_name("0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(ConfigError, match="'/' is refused"):
        validate_branch_name("ckpt/step-10")
    assert validate_branch_name("release-1.0") == "release-1.0"


def test_step_of_branch_ignores_other_branches():
    assert step_of_branch("step-{step}", "main") is None
    assert step_of_branch("step-{step}", "step-") is None
    assert step_of_branch("step-{step}", "step-010") is None  # never produced by the template
    assert step_of_branch("step-{step}", "xstep-10") is None
    assert step_of_branch("step-{step}", "step-10") == 10


def test_the_callback_refuses_a_bad_template_when_it_is_created(hub_repo_id):
    from phi3_lora_hub.callbacks.hub_push import HubPushCallback

    with pytest.raises(ConfigError, match="'/' is refused"):
        HubPushCallback(hub_repo_id, branch_template="ckpt/step-{step}")


def test_the_recipe_refuses_a_bad_template_when_it_is_created(small_base, chat_file):
    from phi3_lora_hub import Phi3LoraRecipe

    with pytest.raises(ConfigError, match="'/' is refused"):
        Phi3LoraRecipe(str(small_base), str(chat_file), hub_model_id="tester/x", hub_branch_template="a/{step}")
