"""Send a canonical request upstream: pooled clients, retries with backoff, fallbacks, and streams
that commit to a status only after the upstream's first byte."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import httpx
from httpx_aiohttp import AiohttpTransport

from engine.policy.models import Policy, Provider
from engine.protocol.errors import ProtocolError, status_for_anthropic_error_type
from engine.providers.anthropic import AnthropicAdapter
from engine.providers.base import Adapter, UpstreamError
from engine.providers.ollama import OllamaAdapter
from engine.providers.openai import OpenAIChatAdapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    provider: str
    model: str


@dataclass
class Attempt:
    provider: str
    model: str
    status: int | None
    error: str | None
    latency_ms: float


@dataclass
class DispatchResult:
    """The upstream outcome of one request (target, status, attempts), for the decision record."""

    target: Target | None = None
    status: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    fallback_used: bool = False

    def record(self) -> dict[str, Any]:
        return {
            "provider": self.target.provider if self.target else None,
            "model": self.target.model if self.target else None,
            "status": self.status,
            "attempts": len(self.attempts),
            "fallback": self.fallback_used,
            "errors": [f"{a.provider}/{a.model}: {a.status or 'no answer'} {a.error}" for a in self.attempts if a.error],
        }


def make_adapter(name: str, config: Provider, policy: Policy) -> Adapter:
    if config.kind == "anthropic":
        return AnthropicAdapter(name, config)
    if config.kind == "ollama":
        return OllamaAdapter(name, config)
    limits = {model: limit.max_output_tokens for model, limit in policy.models.items() if limit.max_output_tokens}
    return OpenAIChatAdapter(name, config, limits)


class Upstreams:
    """One pooled HTTP transport per provider base URL, shared across policy reloads.

    Requests go straight to httpx's transport interface (aiohttp underneath). The httpx client layer
    on top adds URL merging, cookie jars and redirect handling that a gateway does not want, and
    profiles of the request path showed it costing more than the pipeline stages.
    """

    def __init__(self) -> None:
        self._transports: dict[tuple[str, int], AiohttpTransport] = {}
        self._adapters: dict[tuple[int, str], Adapter] = {}
        self._urls: dict[str, httpx.URL] = {}

    def url(self, text: str) -> httpx.URL:
        """Return the parsed URL; upstream URLs repeat, and parsing one costs more than a lookup."""
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) > 4096:
                self._urls.clear()
            url = self._urls[text] = httpx.URL(text)
        return url

    def transport(self, config: Provider) -> AiohttpTransport:
        key = (config.base_url, config.max_connections)
        transport = self._transports.get(key)
        if transport is None:
            limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=config.max_connections)
            transport = AiohttpTransport(limits=limits, trust_env=True)
            self._transports[key] = transport
        return transport

    def adapter(self, policy: Policy, name: str) -> Adapter:
        # Adapters depend only on the (immutable) policy object, so they are built once per policy.
        key = (id(policy), name)
        adapter = self._adapters.get(key)
        if adapter is None or adapter.config is not policy.providers[name]:
            if len(self._adapters) > 256:
                self._adapters.clear()
            adapter = make_adapter(name, policy.providers[name], policy)
            self._adapters[key] = adapter
        return adapter

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()


def _timeout(config: Provider) -> dict[str, float]:
    return {"connect": config.timeout.connect, "read": config.timeout.read, "write": config.timeout.read,
            "pool": config.timeout.connect}


def _retry_after(response: httpx.Response) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = response.headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None
    return None


def _should_retry(error: UpstreamError, config: Provider) -> bool:
    return error.transport or error.status in config.retry.retry_on


def _describe_transport_error(exc: Exception, url: httpx.URL | None = None) -> str:
    # NOTE: httpx-aiohttp 0.2 raises ConnectTimeout for a refused connection too, so the aiohttp
    # error underneath decides between "cannot connect" and "timed out".
    cause = exc.__cause__
    where = f" at {url.copy_with(username=None, password=None, query=None)}" if url is not None else ""
    if isinstance(exc, httpx.ConnectError) or (cause is not None and "connect call failed" in str(cause).lower()):
        return f"cannot connect to the upstream{where}: {cause or exc}"
    if isinstance(exc, httpx.TimeoutException):
        return f"upstream{where} timed out ({type(exc).__name__})"
    return f"upstream{where} connection failed ({type(exc).__name__}: {cause or exc})"


class UpstreamStream:
    """An open upstream stream whose first events have arrived: the status is known and final."""

    def __init__(self, response: httpx.Response, reader: Any, first: list[dict[str, Any]], chunks: AsyncIterator[bytes]):
        self._response = response
        self._reader = reader
        self._first = first
        self._chunks = chunks

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        try:
            for event in self._first:
                yield event
            self._first = []
            async for chunk in self._chunks:
                for event in self._reader.feed(chunk):
                    yield event
            for event in self._reader.finish():
                yield event
        except (httpx.HTTPError, ProtocolError) as exc:
            log.warning("upstream stream broke mid-way: %s", exc)
            message = exc.message if isinstance(exc, ProtocolError) else _describe_transport_error(exc)
            yield {"type": "error", "error": {"type": "api_error", "message": f"upstream stream failed: {message}"}}
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()


class Dispatcher:
    """Tries the chosen target, then its fallbacks, each with the provider's retry policy."""

    def __init__(self, upstreams: Upstreams, policy: Policy, client_headers: dict[str, str]):
        self.upstreams = upstreams
        self.policy = policy
        self.client_headers = client_headers
        self.result = DispatchResult()

    async def complete(self, body: dict[str, Any], targets: list[Target]) -> dict[str, Any]:
        return await self._run(body, targets, stream=False)

    async def open_stream(self, body: dict[str, Any], targets: list[Target]) -> UpstreamStream:
        return await self._run(body, targets, stream=True)

    async def _run(self, body: dict[str, Any], targets: list[Target], stream: bool) -> Any:
        last_error: UpstreamError | None = None
        for index, target in enumerate(targets):
            config = self.policy.providers[target.provider]
            adapter = self.upstreams.adapter(self.policy, target.provider)
            for attempt in range(config.retry.attempts + 1):
                try:
                    outcome = await self._attempt(adapter, config, body, target, stream)
                except UpstreamError as error:
                    last_error = error
                    if not _should_retry(error, config) or attempt == config.retry.attempts:
                        break
                    delay = min(config.retry.backoff * (2 ** attempt), config.retry.max_backoff)
                    if error.retry_after is not None:
                        if error.retry_after > config.retry.max_backoff:
                            log.info("not retrying %s: retry-after %.1fs exceeds max_backoff", target.provider, error.retry_after)
                            break
                        delay = max(delay, error.retry_after)
                    log.info("retrying %s/%s in %.2fs after %s", target.provider, target.model, delay, error)
                    await asyncio.sleep(delay)
                    continue
                self.result.target = target
                self.result.status = 200
                self.result.fallback_used = index > 0
                return outcome
            if last_error is not None and not (_should_retry(last_error, config)):
                break  # a client-side error (400, 401, 404 ...) would fail on a fallback too
            if index + 1 < len(targets):
                log.warning("falling back from %s/%s to %s/%s after %s", target.provider, target.model,
                            targets[index + 1].provider, targets[index + 1].model, last_error)
        assert last_error is not None
        self.result.status = last_error.status
        log.warning("upstream failed after %d attempt(s): %s", len(self.result.attempts), last_error)
        raise last_error

    async def _attempt(self, adapter: Adapter, config: Provider, body: dict[str, Any], target: Target, stream: bool) -> Any:
        prepared = adapter.prepare(body, target.model, stream, self.client_headers)
        transport = self.upstreams.transport(config)
        request = httpx.Request("POST", self.upstreams.url(prepared.url), headers=prepared.headers, content=prepared.content,
                                extensions={"timeout": _timeout(config)})
        started = time.perf_counter()
        response: httpx.Response | None = None
        try:
            response = await transport.handle_async_request(request)
            if response.status_code >= 400:
                data = await response.aread()
                message, error_type = adapter.error_message(response.status_code, data)
                raise UpstreamError(response.status_code, message, retry_after=_retry_after(response), error_type=error_type)
            if not stream:
                data = await response.aread()
                message = adapter.parse_message(data, target.model)
                self._note(target, 200, None, started)
                return message
            reader = adapter.stream_reader(target.model)
            chunks = response.aiter_bytes()
            first: list[dict[str, Any]] = []
            # Wait for the first events before committing to a status: an upstream that fails before
            # its first byte still gets retried, and the client gets the real status code.
            async for chunk in chunks:
                first.extend(reader.feed(chunk))
                if first:
                    break
            else:
                first.extend(reader.finish())
                if not first:
                    raise UpstreamError(502, "upstream closed the stream without sending an event", transport=True)
            if first[0].get("type") == "error":
                error = first[0].get("error") or {}
                raise UpstreamError(status_for_anthropic_error_type(error.get("type"), 502), str(error.get("message") or "upstream error"),
                                    error_type=error.get("type"))
            self._note(target, 200, None, started)
            stream_response, response = response, None  # ownership moves to UpstreamStream
            return UpstreamStream(stream_response, reader, first, chunks)
        except UpstreamError as error:
            self._note(target, error.status, error.message, started)
            raise
        except ProtocolError as error:
            self._note(target, error.status, error.message, started)
            raise UpstreamError(502, error.message) from None
        except httpx.HTTPError as exc:
            message = _describe_transport_error(exc, request.url)
            status = 502 if message.startswith("cannot connect") or not isinstance(exc, httpx.TimeoutException) else 504
            self._note(target, None, message, started)
            raise UpstreamError(status, message, transport=True) from None
        finally:
            if response is not None:
                await response.aclose()

    def _note(self, target: Target, status: int | None, error: str | None, started: float) -> None:
        self.result.attempts.append(Attempt(target.provider, target.model, status, error, (time.perf_counter() - started) * 1000))
