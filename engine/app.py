"""The ASGI application: routes, the active policy store, the runtime state and the watcher."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from engine.http.client_protocols import json_response
from engine.http.routes import routes
from engine.metrics import Metrics
from engine.pipeline.decision_log import DecisionLog
from engine.pipeline.runtime import Runtime
from engine.policy.store import PolicyStore
from engine.protocol.errors import anthropic_error_body, openai_error_body

log = logging.getLogger(__name__)


class Gateway:
    """Everything the request handlers share. One per process."""

    def __init__(self, policy_dir: str | Path, *, watch: bool = True, loopback_only: bool = True):
        self.store = PolicyStore(policy_dir, bound_to_loopback=loopback_only)
        self.runtime = Runtime()
        self.decision_log = DecisionLog()
        self.metrics = Metrics()
        self.watch = watch
        self.loopback_only = loopback_only
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Embeddings run in the default executor, and the batching embedder groups the calls that are
        # in flight together; 16 threads let up to 16 requests share one batch.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=16, thread_name_prefix="leangate"))
        active = self.store.active
        log.info("policy %s loaded from %s (%d files, teams: %s)", active.version, self.store.directory,
                 len(active.files), ", ".join(active.team_names()))
        for warning in active.warnings:
            log.warning("policy: %s", warning)
        # Load the embedder before the first request needs it, not while that request waits.
        await asyncio.to_thread(self.runtime.warm_up, active.base)
        if self.watch:
            self._watcher = asyncio.create_task(self.store.watch(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._watcher, timeout=2)
        await self.runtime.aclose()
        self.decision_log.close()
        log.info("gateway stopped")


def _error_shape(request: Request, status: int, message: str, code: str | None = None) -> Response:
    anthropic = request.url.path.startswith(("/v1/messages", "/messages")) or "anthropic-version" in request.headers
    body = anthropic_error_body(status, message) if anthropic else openai_error_body(status, message, code=code)
    return json_response(body, status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_shape(request, 404, f"no endpoint at {request.method} {request.url.path}", code="unknown_url")
    if exc.status_code == 405:
        return _error_shape(request, 405, f"method {request.method} is not allowed on {request.url.path}",
                            code="method_not_allowed")
    return _error_shape(request, exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_shape(request, 500, "internal gateway error; the gateway log has the details")


class GatewayHeaders:
    """ASGI middleware that gives every response the x-leangate headers the handlers did not set:
    a request id, the active policy version, and `none` for tier and model."""

    def __init__(self, app: Any, gateway: Gateway):
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                if b"x-leangate-request-id" not in present:
                    from engine.http.proxy import new_request_id

                    headers += [
                        (b"x-leangate-request-id", new_request_id().encode()),
                        (b"x-leangate-policy-version", self.gateway.store.active.version.encode()),
                        (b"x-leangate-tier", b"none"),
                        (b"x-leangate-model", b"none"),
                    ]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(policy_dir: str | Path, *, watch: bool = True, loopback_only: bool = True) -> Starlette:
    gateway = Gateway(policy_dir, watch=watch, loopback_only=loopback_only)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await gateway.start()
        try:
            yield {}
        finally:
            await gateway.stop()

    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        middleware=[Middleware(GatewayHeaders, gateway=gateway)],
    )
    app.state.gateway = gateway
    return app
