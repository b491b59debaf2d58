"""A real headless Chromium (Debian's ``chromium`` + ``chromedriver``, driven by Selenium): type a prompt, see both
panes answer, vote, open the leaderboard. A screenshot of each step is saved (the path is printed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from space_testing import QUESTION, alone_answers, hub_reachable, make_settings, running_space

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def space(tiny_model_dir, hub_adapters, tmp_path_factory):
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("browser-data"), PHI3_SPACE_MAX_NEW_TOKENS="32")
    with hub_reachable(), running_space(settings) as running:
        yield running


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1300",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_a_visitor_chats_with_both_panes_votes_and_opens_the_leaderboard(
    browser, space, tiny_model_dir, trained_adapters, tmp_path_factory
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    base_answer = alone_answers(tiny_model_dir, None, [QUESTION], 32)[0]
    adapter_answer = alone_answers(tiny_model_dir, trained_adapters.compass, [QUESTION], 32)[0]
    shots = Path(os.environ.get("PHI3_SPACE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 60)

    def text_in(selector: str, text: str) -> None:
        wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text))

    browser.get(space.url)
    text_in("#rev-2", "")  # page rendered
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#rev-2 input").get_attribute("value") == "main")
    prompt = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "#prompt textarea")))
    prompt.send_keys(QUESTION)
    browser.find_element(By.CSS_SELECTOR, "#send").click()
    text_in("#chat-a", base_answer)
    text_in("#chat-b", adapter_answer)
    assert QUESTION in browser.find_element(By.CSS_SELECTOR, "#chat-a").text
    assert QUESTION in browser.find_element(By.CSS_SELECTOR, "#chat-b").text
    vote = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "#vote-b")))
    browser.save_screenshot(str(shots / "space-answers.png"))
    vote.click()
    text_in("#status", "Thanks for voting!")
    assert len(space.runtime.store.records()) == 1
    tab = next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role='tab']") if "Leaderboard" in b.text)
    tab.click()
    text_in("#leaderboard", "tester/space-compass @ main")
    text_in("#leaderboard", "base model")
    path = shots / "space-leaderboard.png"
    browser.save_screenshot(str(path))
    print(f"\nscreenshots: {shots / 'space-answers.png'} {path}")
    assert path.stat().st_size > 10_000
