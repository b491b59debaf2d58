"""Twenty visitors at once, through gradio_client: every pane gets its own model's complete answer.

The Space keeps room for only two adapters here, so the least recently used is unloaded and reloaded all the
time while the requests queue; an answer from the wrong adapter would differ from that model's own answer.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from gradio_client import Client
from space_testing import alone_answers, answers, hub_reachable, make_settings, running_space

SESSIONS = 20
MAX_NEW = 24
QUESTIONS = ["What currency is used in Peru?", "What is the capital of Japan?", "Where is Kenya?"]
PICKS = {
    "base": ("base", None),
    "main": ("tester/space-compass", "main"),
    "step-4": ("tester/space-compass", "step-4"),
    "terse": ("tester/space-terse", "main"),
}
PAIRS = [("base", "main"), ("main", "terse"), ("terse", "step-4"), ("step-4", "base"), ("main", "step-4")]


@pytest.mark.slow
def test_twenty_simultaneous_sessions_get_their_own_answers(tiny_model_dir, trained_adapters, hub_adapters, tmp_path):
    folders = {
        "base": None,
        "main": trained_adapters.compass,
        "step-4": trained_adapters.checkpoint(4),
        "terse": trained_adapters.terse,
    }
    expected = {name: alone_answers(tiny_model_dir, folder, QUESTIONS, MAX_NEW) for name, folder in folders.items()}
    settings = make_settings(tiny_model_dir, tmp_path / "data", PHI3_SPACE_MAX_LOADED="2")
    results: dict[int, tuple] = {}
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(SESSIONS)

    def visitor(number: int, url: str) -> None:
        left, right = PAIRS[number % len(PAIRS)]
        question = QUESTIONS[number % len(QUESTIONS)]
        try:
            client = Client(url, verbose=False)
            start.wait(timeout=60)
            job = client.submit(question, *PICKS[left], *PICKS[right], "", 0, 1, MAX_NEW, 0, False, api_name="/send")
            results[number] = job.result(timeout=300)  # a generator's last output
            client.predict(api_name="/vote_tie")
            client.close()
        except BaseException as error:
            errors[number] = error

    with hub_reachable(), running_space(settings) as space:
        began = time.monotonic()
        threads = [threading.Thread(target=visitor, args=(n, space.url)) for n in range(SESSIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        elapsed = time.monotonic() - began
        stats = space.runtime.registry.stats
        votes = space.runtime.store.records()
    assert not errors, errors
    wrong = []
    for number in range(SESSIONS):
        left, right = PAIRS[number % len(PAIRS)]
        index = number % len(QUESTIONS)
        chat_a, chat_b, stats_a, stats_b, *_ = results[number]
        got = (answers(chat_a), answers(chat_b))
        if got != ([expected[left][index]], [expected[right][index]]):
            wrong.append((number, left, right, got))
        assert "ended its turn" in stats_a + stats_b or "max new tokens" in stats_a + stats_b
    assert not wrong, wrong
    assert len(votes) == SESSIONS and stats.swaps > 0
    print(
        f"\n{SESSIONS} sessions answered in {elapsed:.1f} s; {stats.loads} adapter loads, {stats.swaps} copied in "
        f"place, {stats.evictions} replaced; load average {os.getloadavg()[0]:.1f}"
    )
