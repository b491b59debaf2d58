"""Every kind of error a push meets is classified (retry or not, ambiguous or not) with a token-free cause."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from phi3_lora_hub.hub.retry import Failure, PushAborted, PushFailed, RetryPolicy, Stopper, failure_of, retrying
from phi3_lora_hub.hub.tokens import Redactor

TOKEN = "hf_secretsecretsecret0000"


def http_error(status: int, message: str = "boom") -> HfHubHTTPError:
    request = httpx2.Request(
        "POST", "http://127.0.0.1:1/api/models/a/b/commit/main", headers={"X-Amzn-Trace-Id": "req-1"}
    )
    response = httpx2.Response(status, request=request)
    return HfHubHTTPError(f"{status} error for url ...\n\n{message}", response=response, server_message=message)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, "transient"), (502, "transient"), (503, "transient"), (429, "transient"), (408, "transient"),
     (412, "conflict"), (400, "permanent"), (401, "permanent"), (403, "permanent"), (404, "permanent")],
)  # fmt: skip
def test_http_statuses(status, kind):
    failure = failure_of(http_error(status))
    assert failure.kind == kind and failure.status == status
    assert failure.request_id == "req-1"
    assert failure.describe() == f"HTTP {status}: boom (request id req-1)"


def test_transport_errors():
    request = httpx2.Request("POST", "http://127.0.0.1:1/x")
    read = failure_of(httpx2.ReadTimeout("timed out", request=request))
    assert read.kind == "transient" and read.ambiguous  # the commit may have landed
    connect = failure_of(httpx2.ConnectError("refused", request=request))
    assert connect.kind == "transient" and not connect.ambiguous
    assert not failure_of(httpx2.ConnectTimeout("slow", request=request)).ambiguous
    lost = failure_of(httpx2.RemoteProtocolError("closed", request=request))
    assert lost.kind == "transient" and lost.ambiguous


def test_xet_connection_errors_are_retried_with_a_hint():
    failure = failure_of(ConnectionError("Upload failed: HTTP status server error (501 Not Implemented)"))
    assert failure.kind == "transient"
    assert "HF_HUB_DISABLE_XET=1" in failure.cause


def test_offline_mode_is_permanent_and_said_so():
    failure = failure_of(OfflineModeIsEnabled("offline"))
    assert failure.kind == "permanent" and "HF_HUB_OFFLINE" in failure.cause


def test_wrapped_lfs_errors_are_classified_by_their_cause():
    try:
        try:
            raise http_error(503)
        except HfHubHTTPError as inner:
            raise RuntimeError("Error while uploading 'adapter_model.safetensors' to the Hub.") from inner
    except RuntimeError as error:
        failure = failure_of(error)
    assert failure.kind == "transient" and failure.status == 503
    assert "adapter_model.safetensors" in failure.cause


def test_causes_never_contain_the_token():
    redact = Redactor(TOKEN)
    for error in (http_error(401, f"bad token {TOKEN}"), ValueError(f"Authorization: Bearer {TOKEN}")):
        assert TOKEN not in failure_of(error, redact).describe()
    assert Redactor(None)(f"x {TOKEN} y") == "x hf_*** y"  # anything shaped like a token goes, too


class CountingStopper(Stopper):
    def __init__(self) -> None:
        self.waits: list[float] = []

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_retrying_backs_off_and_gives_up_after_max_attempts(caplog):
    stopper = CountingStopper()
    calls = []

    def always_503():
        calls.append(1)
        raise http_error(503)

    with pytest.raises(PushFailed) as error:
        retrying(always_503, what="commit", policy=RetryPolicy(4, 1.0, 3.0), redact=str, stopper=stopper)
    assert len(calls) == 4 and stopper.waits == [1.0, 2.0, 3.0]
    assert "commit failed 4 times" in str(error.value) and error.value.failure.status == 503
    warnings = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(warnings) == 3 and all("request id req-1" in line for line in warnings)


def test_retrying_stops_at_once_on_permanent_errors_and_retries_conflicts_without_waiting():
    stopper = CountingStopper()
    with pytest.raises(PushFailed):
        retrying(
            lambda: (_ for _ in ()).throw(http_error(403)), what="x", policy=RetryPolicy(), redact=str, stopper=stopper
        )
    assert stopper.waits == []
    answers = iter([http_error(412), http_error(412), "ok"])
    forgotten: list[Failure] = []

    def conflicting():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = retrying(
        conflicting, what="x", policy=RetryPolicy(), redact=str, stopper=stopper, after_failure=forgotten.append
    )
    assert result == "ok" and stopper.waits == [] and [f.kind for f in forgotten] == ["conflict", "conflict"]


def test_retrying_lets_aborts_through():
    def aborted():
        raise PushAborted("deadline")

    with pytest.raises(PushAborted):
        retrying(aborted, what="x", policy=RetryPolicy(), redact=str)


def test_retry_policy_is_validated():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    assert list(RetryPolicy(5, 1.0, 8.0).delays()) == [1.0, 2.0, 4.0, 8.0]
