"""The stub upstream's HTTP server (aiohttp.web): routes, faults, latency, recording and streaming."""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from engine import tokens
from engine.stub import wire_anthropic, wire_openai
from engine.stub.canonical import InvalidRequest, check_anthropic, parse_json_object
from engine.stub.faults import Fault, FaultCounter
from engine.stub.prompt_cache import DEFAULT_MIN_TOKENS, PromptCacheError, PromptCacheSimulator
from engine.stub.protocols import AnthropicMessages, AzureChat, OllamaChat, OpenAIChat, OpenAIResponses, Protocol, num_ctx
from engine.stub.record import Recorder, redact_headers
from engine.stub.replies import last_user_text, plan_reply, read_markers

logger = logging.getLogger(__name__)

# Large enough for a long agent session with images; the real Messages API stops at 32 MB.
MAX_BODY_BYTES = 64 * 1024 * 1024

ANTHROPIC = AnthropicMessages()
OPENAI_CHAT = OpenAIChat()
AZURE_CHAT = AzureChat()
OPENAI_RESPONSES = OpenAIResponses()
OLLAMA = OllamaChat()


@dataclass(frozen=True)
class StubConfig:
    """Settings of one stub upstream. `faults` apply to every request that reaches a protocol route."""

    latency_ms: int = 0
    faults: tuple[Fault, ...] = ()
    record_dir: Path | None = None
    prompt_cache: bool = False
    cache_min_tokens: int = DEFAULT_MIN_TOKENS


class StubUpstream:
    """The stand-in provider. `application()` builds the aiohttp app that serves every protocol."""

    def __init__(self, config: StubConfig, *, cache: PromptCacheSimulator | None = None) -> None:
        self.config = config
        tokens.encoding()  # load the tokenizer now, not on the first request
        if cache is None and config.prompt_cache:
            cache = PromptCacheSimulator(min_tokens=config.cache_min_tokens)
        self.cache = cache
        self.recorder = Recorder(config.record_dir) if config.record_dir is not None else None
        self.fault_counter = FaultCounter()
        self._request_numbers = itertools.count(1)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_post("/v1/messages/count_tokens", self._anthropic_count_tokens)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/v1/responses", self._openai_responses)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    # --- routes -----------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, ANTHROPIC)

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, OPENAI_CHAT)

    async def _openai_responses(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, OPENAI_RESPONSES)

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, OLLAMA)

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        request_id = self._request_id()
        if not request.query.get("api-version"):
            logger.debug("%s %s rejected with 404: the api-version query is missing", request_id, request.path)
            return self._error_response(AZURE_CHAT, 404, "Resource not found", request_id)
        if not request.headers.get("api-key"):
            logger.debug("%s %s rejected with 401: the api-key header is missing", request_id, request.path)
            message = "Access denied due to a missing or invalid subscription key. Send a valid key in the api-key header."
            return self._error_response(AZURE_CHAT, 401, message, request_id)
        return await self._exchange(request, AZURE_CHAT, deployment=request.match_info["deployment"])

    async def _anthropic_count_tokens(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        request_id = self._request_id()
        try:
            body = parse_json_object(raw)
            check_anthropic(body, count_tokens=True)
            markers = read_markers(last_user_text(body)[0])
        except InvalidRequest as error:
            logger.debug("%s %s rejected with 400: %s", request_id, request.path, error)
            self._record("anthropic-count_tokens", raw, request, None)
            return self._error_response(ANTHROPIC, 400, str(error), request_id)
        input_tokens = tokens.count_request(body)
        self._record("anthropic-count_tokens", raw, request, input_tokens)
        fault = self.fault_counter.combine(itertools.chain(self.config.faults, markers.faults))
        failure = await self._before_first_byte(request, ANTHROPIC, fault, request_id)
        if failure is not None:
            return failure
        return web.Response(body=wire_anthropic.count_tokens_body(input_tokens), content_type="application/json", headers={"request-id": request_id})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        anthropic_client = "anthropic-version" in request.headers or "x-api-key" in request.headers
        protocol = ANTHROPIC if anthropic_client else OPENAI_CHAT
        request_id = self._request_id()
        failure = await self._before_first_byte(request, protocol, self.fault_counter.combine(self.config.faults), request_id)
        if failure is not None:
            return failure
        body = wire_anthropic.models_body() if anthropic_client else wire_openai.models_body()
        return web.Response(body=body, content_type="application/json")

    async def _not_found(self, request: web.Request) -> web.Response:
        protocol = ANTHROPIC if "anthropic-version" in request.headers else OPENAI_CHAT
        if request.path.startswith("/api/"):
            protocol = OLLAMA
        message = f"The stub upstream has no route {request.method} {request.path}."
        return self._error_response(protocol, 404, message, self._request_id())

    # --- the exchange ----------------------------------------------------------------------------

    async def _exchange(self, request: web.Request, protocol: Protocol, *, deployment: str | None = None) -> web.StreamResponse:
        started = time.perf_counter()
        raw = await request.read()
        request_id = self._request_id()
        try:
            body = parse_json_object(raw)
            if deployment is not None:
                body["model"] = deployment  # Azure picks the model by deployment, not by the body
            canonical = protocol.to_canonical(body)
            text, tool_results = last_user_text(canonical)
            markers = read_markers(text)
        except InvalidRequest as error:
            logger.debug("%s %s rejected with 400: %s", request_id, request.path, error)
            self._record(protocol.name, raw, request, None)
            return self._error_response(protocol, 400, str(error), request_id)

        input_tokens = tokens.count_request(canonical)
        extra = {"num_ctx": num_ctx(body)} if protocol is OLLAMA else None
        self._record(protocol.name, raw, request, input_tokens, extra)
        fault = self.fault_counter.combine(itertools.chain(self.config.faults, markers.faults))
        failure = await self._before_first_byte(request, protocol, fault, request_id)
        if failure is not None:
            return failure

        reply = plan_reply(canonical, markers, tool_results, protocol.max_output_tokens(body))
        try:
            usage = protocol.usage(body, canonical, input_tokens, reply, self.cache)
        except PromptCacheError as error:
            logger.debug("%s %s rejected with 400: %s", request_id, request.path, error)
            return self._error_response(protocol, 400, str(error), request_id)
        model = str(body["model"])
        headers = {"request-id": request_id, "x-request-id": request_id, "x-stub-input-tokens": str(usage.input_tokens)}

        if not protocol.wants_stream(body):
            response = web.Response(body=protocol.body(reply, model, usage, body), content_type="application/json", headers=headers)
        else:
            events = protocol.events(reply, model, usage, body)
            response = await self._stream(request, protocol, events, fault, headers)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s %s status=%d in=%d cached=%d out=%d stop=%s fault=%r %.1fms",
                request_id, request.method, request.path, response.status, usage.input_tokens,
                usage.cache_read_tokens, usage.output_tokens, reply.stop, fault.text, (time.perf_counter() - started) * 1000,
            )
        return response

    async def _before_first_byte(self, request: web.Request, protocol: Protocol, fault: Fault, request_id: str) -> web.Response | None:
        """Wait out latency and slow_first_byte, then apply reset or status. Return None to go on."""
        delay_ms = self.config.latency_ms + fault.slow_first_byte_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if fault.reset:
            logger.debug("%s reset by fault %r", request_id, fault.text)
            if request.transport is not None:
                request.transport.abort()
            # The connection is gone, so this response is never sent. Raising it only ends the handler.
            raise web.HTTPServiceUnavailable()
        if fault.status is None:
            return None
        logger.debug("%s %s failed with %d by fault %r", request_id, request.path, fault.status, fault.text)
        message = f"Injected by the stub upstream (fault {fault.text!r})."
        if fault.status == 429:
            message = f"Rate limit reached; try again later. {message}"
        response = self._error_response(protocol, fault.status, message, request_id)
        if fault.retry_after is not None:
            retry_after = fault.retry_after
            response.headers["retry-after"] = str(int(retry_after)) if retry_after == int(retry_after) else str(retry_after)
        return response

    async def _stream(self, request: web.Request, protocol: Protocol, events: list[bytes], fault: Fault, headers: dict) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers=dict(headers, **{"cache-control": "no-cache"}))
        response.content_type = protocol.stream_media_type

        # Stream faults stop before the last event at the latest, so the stream is always incomplete.
        limit = len(events)
        error_after = None
        if fault.cut_after is not None:
            limit = min(fault.cut_after, len(events) - 1)
        if fault.midstream_error is not None and fault.midstream_error < limit:
            limit = error_after = min(fault.midstream_error, len(events) - 1)
        try:
            await response.prepare(request)
            for event in events[:limit]:
                await response.write(event)
            if error_after is not None:
                await response.write(protocol.stream_error("Overloaded (injected by the stub upstream)", error_after))
            await response.write_eof()
        except ConnectionResetError:
            # The client closed the connection (a timeout, or a test that reads part of a stream).
            logger.debug("client closed the connection during the stream of %s", request.path)
        return response

    # --- helpers ---------------------------------------------------------------------------------

    def _request_id(self) -> str:
        return f"req_stub{next(self._request_numbers):010d}"

    def _error_response(self, protocol: Protocol, status: int, message: str, request_id: str) -> web.Response:
        headers = {"request-id": request_id, "x-request-id": request_id}
        return web.Response(status=status, body=protocol.error(status, message, request_id), content_type="application/json", headers=headers)

    def _record(self, protocol_name: str, raw: bytes, request: web.Request, input_tokens: int | None, extra: dict | None = None) -> None:
        if self.recorder is None:
            return
        metadata = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": redact_headers(request.headers),
            "input_tokens": input_tokens,
        }
        if extra:
            metadata.update(extra)
        try:
            self.recorder.write(protocol_name, raw, metadata)
        except OSError as error:
            logger.error("failed to record a %s request in %s: %s", protocol_name, self.recorder.directory, error)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket. Port 0 lets the kernel pick a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(upstream: StubUpstream, sock: socket.socket) -> None:
    """Serve on a bound socket until SIGINT or SIGTERM."""
    runner = web.AppRunner(upstream.application(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=1.0)
    await site.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stopped.set)
    try:
        await stopped.wait()
    finally:
        logger.info("stub upstream stopping")
        await runner.cleanup()
