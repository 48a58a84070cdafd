"""HTTP endpoints. The inference endpoints share `InferenceCall`; the rest are small."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import tokens
from engine.http.auth import AuthError, check_admin, resolve_team
from engine.http.client_protocols import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES, json_response
from engine.http.proxy import BodyTimeout, InferenceCall, gateway_headers, lower_headers, new_request_id, read_body
from engine.protocol.errors import ProtocolError, anthropic_error_body, openai_error_body


async def messages(request: Request) -> Response:
    return await InferenceCall(request, ANTHROPIC).handle()


async def chat_completions(request: Request) -> Response:
    return await InferenceCall(request, OPENAI_CHAT).handle()


async def responses(request: Request) -> Response:
    return await InferenceCall(request, OPENAI_RESPONSES).handle()


async def count_tokens(request: Request) -> Response:
    from engine.protocol.anthropic import validate_count_tokens_request

    gateway = request.app.state.gateway
    policies = gateway.store.active
    request_id = new_request_id()
    headers = gateway_headers(request_id, policies)

    def error(status: int, message: str) -> Response:
        return json_response(anthropic_error_body(status, message), status, headers)

    try:
        resolve_team(policies, lower_headers(request))
    except AuthError as exc:
        return error(exc.status, exc.message)
    try:
        raw = await read_body(request)
    except BodyTimeout as exc:
        return error(408, str(exc))
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return error(400, f"request body is not valid JSON: {exc}")
    try:
        body = validate_count_tokens_request(data)
    except ProtocolError as exc:
        return error(exc.status, str(exc))
    return json_response({"input_tokens": tokens.count_request(body)}, 200, headers)


def _served_models(policies: Any) -> list[dict[str, Any]]:
    """Aliases without globs, then each tier's upstream model, without repeats."""
    policy = policies.base
    seen: dict[str, dict[str, Any]] = {}
    for name in policy.aliases:
        if not any(mark in name for mark in "*?["):
            seen.setdefault(name, {"id": name, "display_name": name})
    for tier in policy.tiers:
        limits = policy.model_limits(tier.model)
        display = (limits.display_name if limits else None) or tier.model
        entry = {"id": tier.model, "display_name": display}
        if limits is not None:
            entry["max_tokens"] = limits.max_output_tokens
            entry["max_input_tokens"] = limits.context_window
        seen.setdefault(tier.model, entry)
    return list(seen.values())


async def models(request: Request) -> Response:
    gateway = request.app.state.gateway
    policies = gateway.store.active
    headers = lower_headers(request)
    anthropic_client = "anthropic-version" in headers
    response_headers = gateway_headers(new_request_id(), policies)
    try:
        resolve_team(policies, headers)
    except AuthError as exc:
        body = anthropic_error_body(exc.status, exc.message) if anthropic_client else openai_error_body(exc.status, exc.message)
        return json_response(body, exc.status, response_headers)

    served = _served_models(policies)
    created = int(gateway.started_at)
    if "client_version" in request.query_params:
        from engine.protocol.responses import codex_models_body

        return json_response(codex_models_body([entry["id"] for entry in served]), 200, response_headers)
    if anthropic_client:
        created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
        data = [{"type": "model", "id": e["id"], "display_name": e["display_name"], "created_at": created_at,
                 **{k: e[k] for k in ("max_input_tokens", "max_tokens") if e.get(k)}} for e in served]
        body = {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}
        return json_response(body, 200, response_headers)
    data = [{"id": e["id"], "object": "model", "created": created, "owned_by": "leangate"} for e in served]
    return json_response({"object": "list", "data": data}, 200, response_headers)


async def hello(request: Request) -> Response:
    return Response(b"" if request.method == "HEAD" else b'{"status":"ok"}', media_type="application/json")


async def live(request: Request) -> Response:
    return json_response({"status": "live"})


async def ready(request: Request) -> Response:
    gateway = request.app.state.gateway
    return json_response({"status": "ready", "policy_version": gateway.store.active.version})


async def metrics(request: Request) -> Response:
    return Response(request.app.state.gateway.metrics.render(), media_type="text/plain; version=0.0.4")


def _admin_guard(request: Request) -> Response | None:
    try:
        check_admin(request.app.state.gateway.store.active, lower_headers(request))
    except AuthError as exc:
        return json_response(openai_error_body(exc.status, exc.message), exc.status)
    return None


def _policy_status(gateway: Any) -> dict[str, Any]:
    store = gateway.store
    active = store.active
    error = store.last_error
    return {
        "version": active.version,
        "directory": str(active.directory),
        "files": active.files,
        "teams": active.team_names(),
        "loaded_at": store.loaded_at,
        "reloads": store.reloads,
        "warnings": active.warnings,
        "last_reload_error": None if error is None else {"at": error.at, "issues": error.issues},
    }


async def admin_policy(request: Request) -> Response:
    denied = _admin_guard(request)
    if denied is not None:
        return denied
    return json_response(_policy_status(request.app.state.gateway))


async def admin_reload(request: Request) -> Response:
    denied = _admin_guard(request)
    if denied is not None:
        return denied
    gateway = request.app.state.gateway
    ok = await gateway.store.reload_async()
    return json_response({"reloaded": ok, **_policy_status(gateway)}, 200 if ok else 422)


def routes() -> list[Route]:
    inference = [
        ("/v1/messages", messages),
        ("/v1/messages/count_tokens", count_tokens),
        ("/v1/chat/completions", chat_completions),
        ("/v1/responses", responses),
    ]
    table = []
    for path, endpoint in inference:
        table.append(Route(path, endpoint, methods=["POST"]))
        # Clients configured with a base URL that already ends in /v1, or with none, still reach us.
        table.append(Route("/v1" + path, endpoint, methods=["POST"]))
        table.append(Route(path[3:], endpoint, methods=["POST"]))
    table += [
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/api/hello", hello, methods=["GET", "HEAD"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/policy", admin_policy, methods=["GET"]),
        Route("/admin/reload", admin_reload, methods=["POST"]),
    ]
    return table
