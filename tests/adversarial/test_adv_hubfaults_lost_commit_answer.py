"""A commit the Hub applied but whose answer was lost is not reported as failed (issue 9, item 3).

Found by the seeded fault storm (``test_adv_hubfaults_chaos.py``): a checkpoint's commit landed on ``main``, its
answer was lost (read timeout, dropped connection), every retry failed too, and the report said "step 50: failed:
commit to main failed 3 times" while ``main`` held step 50. The uploader now asks the Hub for the branch head before
calling such a push failed, and says so when it cannot ask.
"""

from __future__ import annotations

import logging

import pytest
from adv_crash_testing import fake_adapter
from huggingface_hub import HfApi

from phi3_lora_hub.hub.adapter_push import push_adapter
from phi3_lora_hub.hub.errors import HubPushError
from phi3_lora_hub.hub.retry import RetryPolicy

TWO_TRIES = RetryPolicy(max_attempts=2, initial_backoff=0.1, max_backoff=0.1)


def test_adv_hubfaults_an_applied_commit_whose_answer_was_lost_counts_as_pushed(hub, hub_repo_id, tmp_path, caplog):
    """The first try fails reading the head (503); the second one's commit lands, but the connection drops before
    its answer: both tries are spent. The push still reports the commit that is on ``main``, which is there once."""
    caplog.set_level(logging.INFO)
    api = HfApi()
    api.create_repo(hub_repo_id)
    hub.faults.drop("commit", stage="after", count=1)
    hub.faults.fail("repo_info", status=503, count=1)

    pushed = push_adapter(fake_adapter(tmp_path / "adapter"), hub_repo_id, retry=TWO_TRIES)

    history = api.list_repo_commits(hub_repo_id)
    assert pushed.commit == history[0].commit_id
    assert [c.title for c in history].count(history[0].title) == 1
    assert any("applied although its answer was lost" in r.getMessage() for r in caplog.records)


def test_adv_hubfaults_a_lost_answer_the_hub_cannot_confirm_is_reported_as_maybe_applied(hub, hub_repo_id, tmp_path):
    """Same, but the Hub cannot be asked afterwards either (a server without the commits listing): the push
    fails, and its error says the commit may have been applied, which it was (the report must not claim the Hub
    lacks it)."""
    api = HfApi()
    api.create_repo(hub_repo_id)
    hub.faults.drop("commit", stage="after", count=1)
    hub.faults.fail("repo_info", status=503, count=1)
    hub.faults.fail("commits", status=501, count=None)  # not retried (huggingface_hub would wait 23 s on a 503)

    with pytest.raises(HubPushError, match="may have been applied") as error:
        push_adapter(fake_adapter(tmp_path / "adapter"), hub_repo_id, retry=TWO_TRIES)
    hub.faults.clear()
    [record] = error.value.report.pushes
    assert record.status == "failed" and "may have been applied" in (record.error or "")
    assert api.list_repo_commits(hub_repo_id)[0].title == "Adapter after step 0"
