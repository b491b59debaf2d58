"""HTTP timeouts for the publisher's own requests only; every other huggingface_hub user is left as it was."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub import HfApi, get_session, set_client_factory
from huggingface_hub.utils._http import close_session, default_client_factory, hf_request_event_hook

from phi3_lora_hub.hub import timeouts
from phi3_lora_hub.hub.timeouts import HttpTimeouts, TimeoutScope, scoped


@pytest.fixture
def restored_client_factory():
    yield
    set_client_factory(default_client_factory)


def test_only_requests_inside_a_scope_get_timeouts(hub, restored_client_factory):
    timeouts.install()
    api = HfApi()
    hub.faults.delay("whoami", seconds=1.0, count=None)
    assert api.whoami()["name"] == "tester"  # outside the scope: no timeout, as huggingface_hub does by default
    with scoped(TimeoutScope(HttpTimeouts(connect=5, read=0.3))), pytest.raises(httpx2.ReadTimeout):
        api.whoami()
    assert api.whoami()["name"] == "tester"


def test_the_hook_survives_a_recreated_client_and_composes_with_a_user_factory(hub, restored_client_factory):
    seen: list[str] = []

    def user_factory() -> httpx2.Client:  # e.g. a proxy or certificate setup of the user's
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook, lambda request: seen.append(str(request.url))]},
            follow_redirects=True,
        )

    set_client_factory(user_factory)
    timeouts.install()
    timeouts.install()  # idempotent
    close_session()  # what huggingface_hub does itself after a connection error
    hooks = get_session().event_hooks["request"]
    assert hooks.count(timeouts._apply_scope) == 1 and len(hooks) == 3
    hub.faults.delay("whoami", seconds=1.0)
    with scoped(TimeoutScope(HttpTimeouts(connect=5, read=0.3))), pytest.raises(httpx2.ReadTimeout):
        HfApi().whoami()
    assert seen  # the user's hook still runs


def test_ensure_hook_repairs_a_client_from_a_factory_installed_later(hub, restored_client_factory):
    timeouts.install()
    set_client_factory(default_client_factory)  # someone replaces the factory after the publisher started
    assert timeouts._apply_scope not in get_session().event_hooks["request"]
    timeouts.ensure_hook()
    assert timeouts._apply_scope in get_session().event_hooks["request"]


def test_a_factory_given_to_install_keeps_its_transport_and_gets_the_hook(hub, restored_client_factory):
    answered: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        answered.append(request.url.path)
        return httpx2.Response(200, json={"name": "proxied", "type": "user"})

    def user_factory() -> httpx2.Client:  # a transport (proxy, certificates) httpx2 keeps private
        return httpx2.Client(event_hooks={"request": [hf_request_event_hook]}, transport=httpx2.MockTransport(answer))

    set_client_factory(default_client_factory)  # a live client that is not ours
    timeouts.install(base_factory=user_factory)
    close_session()
    assert timeouts._apply_scope in get_session().event_hooks["request"]
    assert HfApi().whoami(token="hf_x")["name"] == "proxied" and answered
