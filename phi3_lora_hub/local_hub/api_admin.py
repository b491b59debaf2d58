"""Control endpoints under ``/_local_hub/`` so tests can drive a server running in another process.

All but ``health`` need ``Authorization: Bearer <admin token>``; faults never apply to these paths, so a test
can always clear them. ``phi3_lora_hub.local_hub.control.RemoteHub`` is a Python client for them.
"""

from __future__ import annotations

from typing import Any

from phi3_lora_hub.local_hub import errors
from phi3_lora_hub.local_hub.faults import rule_from_spec
from phi3_lora_hub.local_hub.messages import Request, Response, json_response
from phi3_lora_hub.local_hub.router import Params
from phi3_lora_hub.local_hub.state import HubState

_RULE_OPTIONS = ("status", "delay", "drop", "stage", "count", "headers", "message")


def health(app: HubState, request: Request, params: Params) -> Response:
    """``GET /_local_hub/health``: liveness, no token needed."""
    return json_response({"status": "ok"})


def list_faults(app: HubState, request: Request, params: Params) -> Response:
    """``GET /_local_hub/faults``: the rules with their remaining ``count`` and ``hits``."""
    return json_response([rule.to_json() for rule in app.faults.rules])


def add_fault(app: HubState, request: Request, params: Params) -> Response:
    """``POST /_local_hub/faults``: ``{"endpoint" or "path", "method"?, "status"?, "delay"?, "drop"?, "stage"?,
    "count"?, "headers"?, "message"?}`` (see ``FaultInjector``); answers the rule with its id."""
    body = request.json_object()
    unknown = set(body) - {"endpoint", "method", "path", *_RULE_OPTIONS}
    if unknown:
        raise errors.bad_request(f"Unknown fault fields: {', '.join(sorted(unknown))}.")
    options: dict[str, Any] = {key: body[key] for key in _RULE_OPTIONS if key in body}
    try:
        rule = rule_from_spec(body.get("endpoint"), body.get("method"), body.get("path"), **options)
    except (TypeError, ValueError) as error:
        raise errors.bad_request(f"Invalid fault rule: {error}") from None
    return json_response(app.faults.add(rule).to_json())


def clear_faults(app: HubState, request: Request, params: Params) -> Response:
    """``DELETE /_local_hub/faults``: remove every rule."""
    app.faults.clear()
    return json_response({})


def remove_fault(app: HubState, request: Request, params: Params) -> Response:
    """``DELETE /_local_hub/faults/{id}``: remove one rule."""
    app.faults.remove(int(params["id"]))
    return json_response({})


def get_settings(app: HubState, request: Request, params: Params) -> Response:
    """``GET /_local_hub/settings``."""
    return json_response(app.settings.to_json())


def update_settings(app: HubState, request: Request, params: Params) -> Response:
    """``PATCH /_local_hub/settings``: change switches (checked; all or nothing)."""
    try:
        app.settings.update(request.json_object())
    except ValueError as error:
        raise errors.bad_request(str(error)) from None
    return json_response(app.settings.to_json())


def list_requests(app: HubState, request: Request, params: Params) -> Response:
    """``GET /_local_hub/requests``: the request log (no tokens)."""
    return json_response([record.to_json() for record in app.log.records()])


def clear_requests(app: HubState, request: Request, params: Params) -> Response:
    """``DELETE /_local_hub/requests``."""
    app.log.clear()
    return json_response({})
