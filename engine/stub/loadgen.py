"""Measure the stub upstream's throughput: `python -m engine.stub.loadgen http://127.0.0.1:PORT`.

Keeps N clients busy for a fixed time, each sending one small request after another on its own
keep-alive connection, and prints requests per second with latency percentiles. Only loopback
URLs are accepted. Run it pinned to another core than the stub (taskset) so the two do not compete.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import sys
import time
from urllib.parse import urlsplit

import aiohttp
import orjson
import uvloop

REQUESTS = {
    "anthropic": ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "say hello to the benchmark"}]}),
    "chat": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say hello to the benchmark"}]}),
    "responses": ("/v1/responses", {"model": "gpt-5-mini", "input": "say hello to the benchmark"}),
    "ollama": ("/api/chat", {"model": "llama3", "messages": [{"role": "user", "content": "say hello to the benchmark"}]}),
}


async def run_load(base_url: str, protocol: str, stream: bool, clients: int, seconds: float) -> dict:
    path, body = REQUESTS[protocol]
    body = dict(body, stream=stream)
    payload = orjson.dumps(body)
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers={"content-type": "application/json"}) as session:

        async def client() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(base_url + path, data=payload) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began

    latencies.sort()
    return {
        "requests": len(latencies),
        "failures": failures,
        "per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.stub.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="Base URL of a stub upstream on loopback, e.g. http://127.0.0.1:8788.")
    parser.add_argument("--protocol", choices=sorted(REQUESTS), default="anthropic", help="Which route to load. Default: anthropic.")
    parser.add_argument("--stream", action="store_true", help="Request streamed responses.")
    parser.add_argument("--clients", type=int, default=50, help="Concurrent clients. Default: 50.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of one run in seconds. Default: 10.")
    parser.add_argument("--runs", type=int, default=3, help="Runs; the median is reported with each run. Default: 3.")
    args = parser.parse_args(argv)

    host = urlsplit(args.url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(f"error: {args.url} is not a loopback URL; the load generator only targets 127.0.0.1, ::1 or localhost", file=sys.stderr)
        return 2

    rates = []
    for run in range(1, args.runs + 1):
        result = uvloop.run(run_load(args.url.rstrip("/"), args.protocol, args.stream, args.clients, args.seconds))
        rates.append(result["per_second"])
        print(
            f"run {run}: {result['per_second']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
            f"{result['requests']} requests, {result['failures']} failed",
            flush=True,
        )
    print(f"median: {statistics.median(rates):.0f} req/s ({args.protocol}, stream={args.stream}, {args.clients} clients)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
