"""The inference path shared by every client protocol: authenticate, parse into the canonical
request, run the pipeline, send upstream, and respond in the client's protocol, streaming or not."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from typing import Any, AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from engine.http.auth import AuthError, resolve_team
from engine.http.client_protocols import ClientProtocol, json_response
from engine.pipeline.context import RequestContext, resolve_session
from engine.pipeline.run import run_pipeline
from engine.policy.loader import PolicySet
from engine.policy.models import Policy
from engine.protocol.errors import ProtocolError
from engine.providers.base import UpstreamError
from engine.providers.dispatch import Dispatcher

log = logging.getLogger(__name__)

# Anthropic rejects bodies above 32 MB with 413; the gateway does the same before parsing.
MAX_BODY_BYTES = 32 * 1024 * 1024
# A client that sends part of a body and then stops gets 408 after this long (seconds, default 60,
# LEANGATE_BODY_TIMEOUT_S overrides it), instead of holding the connection until it goes away.
BODY_TIMEOUT_S = float(os.environ.get("LEANGATE_BODY_TIMEOUT_S") or 60.0)


class BodyTimeout(Exception):
    """The client did not send the whole request body within BODY_TIMEOUT_S."""


async def read_body(request: Request, timeout: float = BODY_TIMEOUT_S) -> bytes:
    """Return the request body, or raise BodyTimeout when it does not arrive in time."""
    try:
        return await asyncio.wait_for(request.body(), timeout)
    except asyncio.TimeoutError as error:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s; send the whole body at once") from error


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def lower_headers(request: Request) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in request.scope["headers"]}


def gateway_headers(request_id: str, policies: PolicySet, ctx: RequestContext | None = None) -> dict[str, str]:
    headers = {"x-leangate-request-id": request_id, "x-leangate-policy-version": policies.version}
    tier = (ctx.record.get("tier") if ctx else None) or {}
    headers["x-leangate-tier"] = str(tier.get("tier") or "none")
    headers["x-leangate-model"] = str(tier.get("model") or "none")
    counts = (ctx.record.get("tokens") if ctx else None) or {}
    if "before" in counts:
        headers["x-leangate-tokens-before"] = str(counts["before"])
        headers["x-leangate-tokens-after"] = str(counts["after"])
    tools = (ctx.record.get("tools") if ctx else None) or {}
    if tools.get("class"):
        headers["x-leangate-class"] = str(tools["class"])
    return headers


def usage_of(message: dict[str, Any]) -> dict[str, Any]:
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return {}
    return {k: v for k, v in usage.items() if isinstance(v, (int, float))}


class InferenceCall:
    """One inference request from arrival to the last byte, and its decision record."""

    def __init__(self, request: Request, protocol: ClientProtocol):
        self.request = request
        self.protocol = protocol
        self.gateway = request.app.state.gateway
        self.policies: PolicySet = self.gateway.store.active  # pinned for the whole request
        self.request_id = new_request_id()
        self.started = time.perf_counter()
        self.ctx: RequestContext | None = None
        self.policy: Policy | None = None

    def error(self, status: int, message: str, error_type: str | None = None, param: str | None = None) -> Response:
        headers = gateway_headers(self.request_id, self.policies, self.ctx)
        return json_response(self.protocol.error_body(status, message, error_type, param), status, headers)

    async def handle(self) -> Response:
        headers = lower_headers(self.request)
        try:
            team = resolve_team(self.policies, headers)
        except AuthError as exc:
            return self.error(exc.status, exc.message)
        self.policy = policy = self.policies.for_team(team)

        try:
            raw = await read_body(self.request)
        except BodyTimeout as exc:
            log.info("request %s: %s", self.request_id, exc)
            return self.error(408, str(exc))
        if len(raw) > MAX_BODY_BYTES:
            return self.error(413, f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
        if not raw:
            return self.error(400, "request body is empty; send a JSON object")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self.error(400, f"request body is not valid JSON: {exc}")
        try:
            body, side = self.protocol.parse(data)
        except ProtocolError as exc:
            return self.error(exc.status, str(exc), exc.error_type, exc.param)
        side.setdefault("created", int(time.time()))
        session_id, session_source = resolve_session(headers, body, policy.sessions.header,
                                                     policy.sessions.derive_from_conversation)

        ctx = self.ctx = RequestContext(
            request_id=self.request_id,
            protocol=self.protocol.name,  # type: ignore[arg-type]
            body=body,
            headers=headers,
            team=team,
            session_id=session_id,
            scratch={"session_source": session_source},
            requested_model=str(data.get("model") or "") if isinstance(data, dict) else "",
            stream=bool(side.get("stream")),
        )
        ctx.scratch["body_bytes"] = len(raw)
        try:
            outcome = await run_pipeline(ctx, policy, self.gateway.runtime)
        except ProtocolError as exc:
            return self.error(exc.status, str(exc), exc.error_type)
        response_headers = gateway_headers(self.request_id, self.policies, ctx)
        if outcome.cache_hit is not None:
            return self.serve_message(outcome.cache_hit, side, response_headers, cached=True)

        dispatcher = Dispatcher(self.gateway.runtime.upstreams, policy, headers)
        if not ctx.stream:
            try:
                message = await dispatcher.complete(ctx.body, outcome.targets)
            except UpstreamError as exc:
                self.finish(dispatcher, {}, exc.status, exc.message)
                return self.error(exc.status, exc.message, exc.error_type)
            self._update_model_header(response_headers, dispatcher)
            await self.gateway.runtime.cache_store(ctx, policy, message)
            self.finish(dispatcher, usage_of(message), 200, None)
            return self.serve_message(message, side, response_headers, cached=False)

        try:
            upstream = await dispatcher.open_stream(ctx.body, outcome.targets)
        except UpstreamError as exc:
            self.finish(dispatcher, {}, exc.status, exc.message)
            return self.error(exc.status, exc.message, exc.error_type)
        self._update_model_header(response_headers, dispatcher)
        model = dispatcher.result.target.model if dispatcher.result.target else ""
        writer = self.protocol.stream_writer(side, self.request_id, model)
        return StreamingResponse(self._relay(upstream, writer, dispatcher), media_type=self.protocol.stream_media_type,
                                 headers={**response_headers, "cache-control": "no-cache"})

    async def _relay(self, upstream: Any, writer: Any, dispatcher: Dispatcher) -> AsyncIterator[bytes]:
        from engine.protocol.anthropic import MessageAssembler

        assembler = MessageAssembler()
        error: str | None = None
        try:
            async for event in upstream.events():
                if event.get("type") == "error":
                    # The writer maps the upstream's error type (overloaded, rate limited ...) itself.
                    details = event.get("error") or {}
                    error = str(details.get("message") or "upstream error")
                    log.warning("request %s: upstream stream failed: %s", self.request_id, error)
                    for chunk in writer.feed(event):
                        yield chunk
                    break
                assembler.feed(event)
                for chunk in writer.feed(event):
                    yield chunk
            if error is None and not assembler.complete:
                error = "upstream stream ended before message_stop"
                log.warning("request %s: %s (provider %s)", self.request_id, error,
                            dispatcher.result.target.provider if dispatcher.result.target else "?")
            for chunk in writer.close():
                yield chunk
        finally:
            await upstream.aclose()
            message = assembler.message()
            if error is None and assembler.complete:
                await self.gateway.runtime.cache_store(self.ctx, self.policy, message)
            self.finish(dispatcher, usage_of(message), 200, error)

    def _update_model_header(self, headers: dict[str, str], dispatcher: Dispatcher) -> None:
        target = dispatcher.result.target
        if target is not None:
            headers["x-leangate-model"] = target.model

    def serve_message(self, message: dict[str, Any], side: dict[str, Any], headers: dict[str, str], cached: bool) -> Response:
        if cached:
            # A hit is a new response to this request, and nothing was billed upstream for it.
            message = {**message, "id": "msg_" + self.request_id.removeprefix("req_"),
                       "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                                 "cache_read_input_tokens": 0}}
            cache = (self.ctx.record.get("cache") if self.ctx else None) or {}
            headers["x-leangate-cache"] = "hit"
            if cache.get("similarity") is not None:
                headers["x-leangate-cache-similarity"] = f"{cache['similarity']:.4f}"
            self.finish(None, {}, 200, None)
        if not side.get("stream"):
            return json_response(self.protocol.render(message, side, self.request_id), 200, headers)
        from engine.protocol.anthropic import message_to_events

        writer = self.protocol.stream_writer(side, self.request_id, str(message.get("model") or ""))

        async def replay() -> AsyncIterator[bytes]:
            for event in message_to_events(message):
                for chunk in writer.feed(event):
                    yield chunk
            for chunk in writer.close():
                yield chunk

        return StreamingResponse(replay(), media_type=self.protocol.stream_media_type, headers=headers)

    def finish(self, dispatcher: Dispatcher | None, usage: dict[str, Any], status: int, error: str | None) -> None:
        ctx = self.ctx
        if ctx is None or self.policy is None:
            return
        record = {
            "request_id": self.request_id,
            "time": time.time(),
            "team": ctx.team,
            "policy_version": self.policies.version,
            "protocol": ctx.protocol,
            "requested_model": ctx.requested_model,
            "stream": ctx.stream,
            "session": hashlib.sha256(ctx.session_id.encode()).hexdigest()[:16] if ctx.session_id else None,
            **ctx.record,
            "upstream": dispatcher.result.record() if dispatcher is not None else None,
            "status": status,
            "error": error,
            "usage": usage,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
        }
        if dispatcher is not None and dispatcher.result.target is not None:
            tier = dict(record.get("tier") or {})
            tier["provider"], tier["model"] = dispatcher.result.target.provider, dispatcher.result.target.model
            record["tier"] = tier
        if self.policy.decision_log.prompt_text:
            record["last_user_text"] = ctx.scratch.get("last_user_text")
        self.gateway.decision_log.write(self.policy.decision_log.path, record)
        self.gateway.metrics.observe(record)
