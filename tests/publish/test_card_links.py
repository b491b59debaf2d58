"""Links in a card pushed to a local Hub stay valid when the hub is served again on another port."""

from __future__ import annotations

import re
import shutil

import httpx2
from huggingface_hub import HfApi

from phi3_lora_hub.cards import CardOptions, write_card


def test_card_links_on_a_local_hub_are_site_relative_and_resolve(hub, trained_run, tmp_path, hub_repo_id):
    directory = shutil.copytree(trained_run / "checkpoint-2", tmp_path / "c2")
    options = CardOptions(
        repo_id=hub_repo_id, endpoint=hub.url, branch="step-2", checkpoint=True, branches={2: "step-2"}
    )
    text = str(write_card(directory, options))
    assert f":{hub.port}" not in text and "127.0.0.1" not in text
    links = set(re.findall(r"\]\((/[^)\s]+)\)", text))
    assert f"/{hub_repo_id}/tree/step-2" in links and f"/{hub_repo_id}" in links
    api = HfApi()
    api.create_repo(hub_repo_id)
    api.create_branch(hub_repo_id, branch="step-2")
    with httpx2.Client(base_url=hub.url, trust_env=False) as client:  # the same links work on any port
        for link in links:
            assert client.get(link).status_code == 200, link


def test_card_links_on_the_public_hub_stay_absolute():
    assert CardOptions(repo_id="me/x").repo_url == "https://huggingface.co/me/x"
