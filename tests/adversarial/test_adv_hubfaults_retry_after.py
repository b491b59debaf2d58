"""A Hub that says how long to wait (``429 Too Many Requests`` with ``Retry-After``) is waited for (issue 9, item 3).

Found while building the seeded fault schedule of ``test_adv_hubfaults_chaos.py`` (429 with ``Retry-After`` is one of
its fault kinds): the push retried a rate-limited commit after its own backoff (a fraction of a second) instead of
the server's ``Retry-After``, so a real rate limit was hit again and again until the attempts ran out.
"""

from __future__ import annotations

import logging
import time

from adv_crash_testing import fake_adapter
from huggingface_hub import HfApi

from phi3_lora_hub.hub.adapter_push import push_adapter
from phi3_lora_hub.hub.retry import RetryPolicy


def test_adv_hubfaults_a_rate_limited_commit_is_retried_after_the_servers_retry_after(
    hub, hub_repo_id, tmp_path, caplog, monkeypatch
):
    """A commit answered 429 with ``Retry-After: 2`` is tried again no sooner than 2 s later, although the retry
    policy's own backoff is 0.1 s; the log line says so; the push lands."""
    caplog.set_level(logging.WARNING)
    HfApi().create_repo(hub_repo_id)
    rule = hub.faults.fail("commit", status=429, headers={"Retry-After": "2"}, count=1)
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=0.2)

    commits: list[float] = []
    real_commit = HfApi.create_commit

    def timed_commit(self, *args, **kwargs):
        commits.append(time.monotonic())
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", timed_commit)
    pushed = push_adapter(fake_adapter(tmp_path / "adapter"), hub_repo_id, retry=policy)

    assert len(commits) == 2 and commits[1] - commits[0] >= 2.0
    assert rule.hits == 1 and pushed.commit == HfApi().repo_info(hub_repo_id).sha
    [warning] = [r.getMessage() for r in caplog.records if "HTTP 429" in r.getMessage()]
    assert "retrying in 2.0 s" in warning
