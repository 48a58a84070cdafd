"""Load client of `leangate bench`, run in its own process so it does not share a core's event loop
with the gateway under test:

    python -m benchmarks.harness.load URL --body-file BODY.json --clients 50 --seconds 8 [--header K:V]

Each of the concurrent clients posts one request after another on a keep-alive connection until
the time is up. `{n}` in the body is replaced by a request counter. Prints one JSON object:
requests, errors, responses that leangate served from its cache (`x-leangate-cache: hit`),
requests per second and latency percentiles in milliseconds. A response counts
as an error unless it has status 200 and, for a stream, ends with Anthropic's `message_stop`
event. Only loopback URLs are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import uvloop

REQUEST_TIMEOUT_S = 30.0


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(round(fraction * len(sorted_values))))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run_load(url: str, template: bytes, headers: dict[str, str], clients: int, seconds: float,
                   stream: bool) -> dict:
    counter = itertools.count()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    cache_hits = 0
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=clients)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"content-type": "application/json", **headers}) as session:

        async def client() -> None:
            nonlocal cache_hits
            while time.perf_counter() < deadline:
                payload = template.replace(b"{n}", str(next(counter)).encode())
                started = time.perf_counter()
                try:
                    async with session.post(url, data=payload) as response:
                        body = await response.read()
                        if response.headers.get("x-leangate-cache") == "hit":
                            cache_hits += 1
                        if response.status != 200:
                            errors[f"status {response.status}: {body[:160].decode(errors='replace')}"] += 1
                        elif stream and b"message_stop" not in body:
                            errors["stream ended without message_stop"] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    errors[f"{type(error).__name__}: {error}"[:200]] += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began

    latencies.sort()
    error_count = sum(errors.values())
    return {
        "requests": len(latencies),
        "errors": error_count,
        "cache_hits": cache_hits,
        "error_samples": [f"{count}x {text}" for text, count in errors.most_common(3)],
        "seconds": elapsed,
        "per_second": (len(latencies) - error_count) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness.load", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="Full loopback URL to post to, e.g. http://127.0.0.1:8787/v1/messages.")
    parser.add_argument("--body-file", required=True, help="JSON request body; `{n}` is replaced by a counter.")
    parser.add_argument("--header", action="append", default=[], help="Extra header as NAME:VALUE; repeatable.")
    parser.add_argument("--headers-file", help="JSON object of extra headers (keeps keys out of the process list).")
    parser.add_argument("--clients", type=int, default=50, help="Concurrent clients (default: 50).")
    parser.add_argument("--seconds", type=float, default=8.0, help="Duration in seconds (default: 8).")
    args = parser.parse_args(argv)

    if not is_loopback_url(args.url):
        print(f"error: {args.url} is not a loopback URL; use 127.0.0.1, ::1 or localhost", file=sys.stderr)
        return 2
    if args.clients < 1 or args.seconds <= 0:
        print("error: --clients must be at least 1 and --seconds above 0", file=sys.stderr)
        return 2
    try:
        template = Path(args.body_file).read_bytes()
        stream = bool(json.loads(template).get("stream"))
    except (OSError, ValueError) as error:
        print(f"error: cannot read the JSON body in {args.body_file}: {error}", file=sys.stderr)
        return 2
    headers: dict[str, str] = {}
    if args.headers_file:
        try:
            headers.update({str(name): str(value) for name, value in json.loads(Path(args.headers_file).read_text()).items()})
        except (OSError, ValueError, AttributeError) as error:
            print(f"error: cannot read a JSON object of headers in {args.headers_file}: {error}", file=sys.stderr)
            return 2
    for item in args.header:
        name, separator, value = item.partition(":")
        if not separator or not name.strip():
            print(f"error: invalid --header {item!r}; expected NAME:VALUE", file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()

    result = uvloop.run(run_load(args.url, template, headers, args.clients, args.seconds, stream))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
