"""A real headless Chromium (Debian's ``chromium`` + ``chromedriver``, driven by Selenium) walks every state of the
Space: named chat, revision pick, vote, Clear, blind battle, reveal, a second vote after the reveal, New round,
refusals, the leaderboard, and a phone-sized screen. After each event the pane titles are checked against the
model that pane answers with, and each vote against the record in the vote store's file.

Screenshots of the main states (1400x900 and 412x915) are saved, shrunk to 64 colours, into
``$PHI3_SPACE_SCREENSHOTS`` (else a temporary folder; the path is printed); ``docs/space-*.png`` are these files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from space_testing import QUESTION, alone_answers, hub_reachable, make_settings, running_space

from phi3_lora_hub.arena.votes import read_votes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
COMPASS = "tester/space-compass"
DESKTOP, PHONE = (1400, 900), (412, 915)

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


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("PHI3_SPACE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield Page(driver)
    driver.quit()


class Page:
    """The Space in the browser: what a visitor sees and does, by the app's element ids."""

    def __init__(self, driver) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, 60)

    def open(self, url: str, size: tuple[int, int]) -> None:
        width, height = size
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        self.driver.get(url)
        self.until(lambda: self.value("#rev-2") == "main" and "main" in self.title("b"), "the page loaded")

    def find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def until(self, condition, what: str) -> None:
        self.wait.until(lambda _: condition(), message=f"waited for {what}")

    def text(self, selector: str) -> str:
        return self.find(selector).text

    def value(self, selector: str) -> str:
        return self.find(f"{selector} input").get_attribute("value") or ""

    def title(self, pane: str) -> str:
        """The pane's title (the Chatbot's label)."""
        return self.find(f"#chat-{pane} [data-testid='block-label']").text

    def titles(self) -> tuple[str, str]:
        return self.title("a"), self.title("b")

    def enabled(self, selector: str) -> bool:
        return self.find(selector).is_enabled()

    def shown(self, selector: str) -> bool:
        from selenium.webdriver.common.by import By

        return any(element.is_displayed() for element in self.driver.find_elements(By.CSS_SELECTOR, selector))

    def in_view(self, selector: str) -> bool:
        """The element lies entirely inside the window, without scrolling."""
        return self.driver.execute_script(
            "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
            "return r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth"
            " && r.height > 0;",
            selector,
        )

    def rect(self, selector: str) -> dict:
        return self.driver.execute_script(
            "return document.querySelector(arguments[0]).getBoundingClientRect().toJSON();", selector
        )

    def choose(self, selector: str, option: str) -> None:
        """Pick ``option`` from the dropdown ``selector`` as a visitor does (open it, click the entry)."""
        from selenium.webdriver.common.by import By

        self.find(f"{selector} input").click()
        self.until(lambda: self.shown("li[role='option']"), f"the options of {selector}")
        entry = next(
            li for li in self.driver.find_elements(By.CSS_SELECTOR, "li[role='option']") if li.text.strip() == option
        )
        entry.click()

    def type_into(self, selector: str, text: str) -> None:
        """Type ``text`` into the dropdown ``selector`` (a repo id not in the list) and confirm with Enter."""
        from selenium.webdriver.common.keys import Keys

        field = self.find(f"{selector} input")
        field.click()
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(text, Keys.ENTER)

    def send(self, prompt: str) -> None:
        self.find("#prompt textarea").send_keys(prompt)
        self.find("#send").click()
        self.until(lambda: self.enabled("#regenerate") and "Which answer" in self.text("#status"), "both answers")

    def vote(self, button: str) -> None:
        self.until(lambda: self.enabled(f"#{button}"), f"{button} to be enabled")
        self.find(f"#{button}").click()
        self.until(lambda: "Thanks for voting!" in self.text("#status"), "the vote to be taken")

    def screenshot(self, path: Path) -> None:
        from PIL import Image

        self.driver.save_screenshot(str(path))
        with Image.open(path) as image:
            image.convert("RGB").quantize(colors=64).save(path, optimize=True)


def commit(hub_adapters, revision: str) -> str:
    return hub_adapters.compass.commits[revision][:7]


def votes(space) -> list:
    return read_votes(space.runtime.store.path) if space.runtime.store.path.exists() else []


def test_a_visitor_walks_every_state_and_the_titles_and_votes_always_tell_the_truth(
    browser, space, hub_adapters, tiny_model_dir, trained_adapters, shots
):
    base_answer = alone_answers(tiny_model_dir, None, [QUESTION], 32)[0]
    step_12_answer = alone_answers(tiny_model_dir, trained_adapters.checkpoint(12), [QUESTION], 32)[0]
    main_title = f"Model B · {COMPASS} @ main ({commit(hub_adapters, 'main')})"
    step_12_title = f"Model B · {COMPASS} @ step-12 ({commit(hub_adapters, 'step-12')})"
    page = browser
    page.open(space.url, DESKTOP)

    # Start: the titles name the default models; nothing to regenerate, stop or vote on; the base has no revisions.
    assert page.titles() == ("Model A · base model", main_title)
    assert page.in_view("#prompt textarea") and page.in_view("#send")
    assert not page.enabled("#stop") and not page.enabled("#regenerate") and not page.enabled("#vote-a")
    assert not page.find("#rev-1 input").is_enabled()
    page.screenshot(shots / "space-start.png")

    # A revision pick: pane B's title follows it at once, and the answer comes from that revision.
    page.choose("#rev-2", "step-12")
    page.until(lambda: page.title("b") == step_12_title, "pane B's title to follow the revision picked")
    assert "✓" in page.text("#pick-status-2") and page.title("a") == "Model A · base model"
    page.send(QUESTION)
    assert base_answer in page.text("#chat-a") and step_12_answer in page.text("#chat-b")
    assert page.titles() == ("Model A · base model", step_12_title)
    assert "token" in page.text("#stats-a") and not page.enabled("#stop")
    page.screenshot(shots / "space-answers.png")

    before = len(votes(space))
    page.vote("vote-b")
    assert page.titles() == ("Model A · base model", step_12_title)
    [named] = votes(space)[before:]
    assert (named.mode, named.vote) == ("named", "rightvote")
    assert (named.right.model.repo, named.right.model.revision) == (COMPASS, hub_adapters.compass.commits["step-12"])
    assert not page.enabled("#vote-a")  # one vote per answer

    # Clear: empty panes, the same models, the same titles.
    page.find("#clear").click()
    page.until(lambda: QUESTION not in page.text("#chat-a"), "the panes to be cleared")
    assert page.titles() == ("Model A · base model", step_12_title)
    assert not page.enabled("#regenerate")

    # A blind battle: a visible toggle; pickers hidden, titles hidden, New round offered.
    page.find("#blind input").click()
    page.until(lambda: page.titles() == ("Model A · hidden", "Model B · hidden"), "hidden titles")
    assert not page.shown("#repo-1") and page.shown("#new-round") and page.shown("#battle-note")
    page.send(QUESTION)
    assert page.titles() == ("Model A · hidden", "Model B · hidden")
    page.screenshot(shots / "space-blind.png")
    page.vote("vote-a")
    revealed = page.titles()
    assert all("hidden" not in title for title in revealed)
    blind_vote = votes(space)[-1]
    assert (blind_vote.mode, blind_vote.vote) == ("blind", "leftvote")
    assert [title.split(" · ", 1)[1] for title in revealed] == [
        label(blind_vote.left.model, hub_adapters),
        label(blind_vote.right.model, hub_adapters),
    ]
    page.screenshot(shots / "space-revealed.png")

    # After the reveal the conversation goes on by name: the next vote is not blind.
    page.send("What is the capital of Japan?")
    assert page.titles() == revealed
    page.vote("vote-tie")
    after_reveal = votes(space)[-1]
    assert (after_reveal.mode, after_reveal.conv_id) == ("named", blind_vote.conv_id)

    # New round: a fresh battle, hidden again, empty panes.
    page.find("#new-round").click()
    page.until(lambda: page.titles() == ("Model A · hidden", "Model B · hidden"), "a new hidden pair")
    assert "Japan" not in page.text("#chat-a") and not page.enabled("#vote-a")

    # Back to named: pickers visible again and the titles name their models.
    page.find("#blind input").click()
    page.until(lambda: page.shown("#repo-1") and "hidden" not in page.title("a"), "named mode")
    assert page.titles() == ("Model A · base model", step_12_title)

    # Refusals appear next to their cause, without Gradio's error popups or red pills.
    page.type_into("#repo-1", "someone-else/lora")
    page.until(lambda: "allowlist" in page.text("#pick-status-1"), "the refusal under the first picker")
    page.find("#send").click()  # an empty prompt
    page.until(lambda: "Write a prompt first" in page.text("#status"), "the refusal under the prompt")
    assert not page.shown("[data-testid='toast-body']") and not page.shown(".error")
    assert page.titles() == ("Model A · no model", step_12_title)

    # The leaderboard lists the models voted on.
    tab = next(b for b in page.driver.find_elements("css selector", "button[role='tab']") if "Leaderboard" in b.text)
    tab.click()
    page.until(lambda: f"{COMPASS} @ " in page.text("#leaderboard"), "the leaderboard")
    assert "base model" in page.text("#leaderboard")
    page.screenshot(shots / "space-leaderboard.png")
    print(f"\nscreenshots in {shots}")


def label(model, hub_adapters) -> str:
    """How a pane titles ``model`` (a vote record's ModelRef)."""
    if model.repo == "base":
        return "base model"
    repo = hub_adapters.compass if model.repo == COMPASS else hub_adapters.terse
    revision = next(name for name, sha in repo.commits.items() if sha == model.revision)
    return f"{model.repo} @ {revision} ({model.revision[:7]})"


def test_on_a_phone_the_panes_stack_and_the_prompt_is_in_view(browser, space, tiny_model_dir, shots):
    page = browser
    page.open(space.url, PHONE)
    assert page.in_view("#prompt textarea") and page.in_view("#send")
    a, b = page.rect("#chat-a"), page.rect("#chat-b")
    assert b["top"] >= a["bottom"] and a["width"] > PHONE[0] * 0.8  # one above the other, each the full width
    page.send(QUESTION)
    assert page.in_view("#prompt textarea") and page.in_view("#send")
    page.screenshot(shots / "space-phone.png")


def test_stop_is_enabled_only_while_the_answers_stream(browser, space, monkeypatch):
    """The answers held for 5 s after their first token: Stop is enabled (Send and Regenerate disabled) while they
    stream; after Stop the panes keep what was said, and Stop is disabled again."""
    import time

    from phi3_lora_hub.space.streaming import SideProgress

    stream = space.runtime.stream

    def slow(*args, **kwargs):
        for step, progress in enumerate(stream(*args, **kwargs)):
            if step == 0:
                yield [SideProgress(side.text[:8], 1) for side in progress]
                time.sleep(5)
            yield progress

    monkeypatch.setattr(space.runtime, "stream", slow)
    page = browser
    page.open(space.url, DESKTOP)
    assert not page.enabled("#stop")
    page.find("#prompt textarea").send_keys(QUESTION)
    page.find("#send").click()
    page.until(lambda: "so far" in page.text("#stats-a"), "the answers to stream")
    assert page.enabled("#stop") and not page.enabled("#send") and not page.enabled("#regenerate")
    page.find("#stop").click()
    page.until(lambda: "Stopped." in page.text("#status"), "the answers to stop")
    assert not page.enabled("#stop") and page.enabled("#send") and page.enabled("#regenerate")
    assert "so far" not in page.text("#stats-a") + page.text("#stats-b")  # no pane claims to be still answering
