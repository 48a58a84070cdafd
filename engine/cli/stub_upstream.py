"""`leangate stub-upstream`: run the local stand-in provider for tests, the demo and benchmarks."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

DESCRIPTION = (
    "Run a local stand-in provider on loopback that speaks Anthropic Messages, OpenAI Chat and "
    "Responses, Azure OpenAI and Ollama on one port, reports token usage counted with the project "
    "tokenizer, and injects latency and faults on request. See docs/stub-upstream.md."
)

DEFAULT_PORT = 8788


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="Loopback address to listen on (127.0.0.1, ::1 or localhost). Default: 127.0.0.1.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port; 0 picks a free port. Default: {DEFAULT_PORT}.")
    parser.add_argument("--latency-ms", type=int, default=0, metavar="MS", help="Wait this many milliseconds before the first byte of every response.")
    parser.add_argument("--record", metavar="DIR", help="Write every request body received, with a metadata sidecar, to DIR.")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="Apply a fault to every request, e.g. status=429,retry_after=2,times=1 or reset or cut_after=3. Repeatable.",
    )
    parser.add_argument("--prompt-cache", action="store_true", help="Simulate Anthropic and OpenAI prompt caching in the reported usage.")
    parser.add_argument(
        "--cache-min-tokens",
        type=int,
        default=None,
        metavar="N",
        help="Minimum prefix length in tokens that Anthropic caching writes. Default: 1024.",
    )
    parser.add_argument("--port-file", metavar="FILE", help="Write the port number to FILE once the stub listens.")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="Log level on stderr; debug adds a one-line summary per request. Default: info.",
    )


def loopback_host(host: str) -> str | None:
    """Return host as a loopback address literal, or None if it is not loopback."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return str(address) if address.is_loopback else None


def _write_port_file(path: Path, port: int) -> None:
    # Write then rename, so a test polling the file never reads a half-written number.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{port}\n")
    os.replace(temporary, path)


def run(args: argparse.Namespace) -> int:
    from engine.stub.faults import FaultSpecError, parse_fault
    from engine.stub.prompt_cache import DEFAULT_MIN_TOKENS

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    host = loopback_host(args.host)
    if host is None:
        print(f"error: --host {args.host!r} is not a loopback address; the stub serves only 127.0.0.1, ::1 or localhost", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port} is out of range; use 0 to 65535 (0 picks a free port)", file=sys.stderr)
        return 2
    if args.latency_ms < 0:
        print(f"error: --latency-ms {args.latency_ms} must not be negative", file=sys.stderr)
        return 2
    if args.cache_min_tokens is not None and args.cache_min_tokens < 0:
        print(f"error: --cache-min-tokens {args.cache_min_tokens} must not be negative", file=sys.stderr)
        return 2
    try:
        faults = tuple(parse_fault(spec) for spec in args.fault)
    except FaultSpecError as error:
        print(f"error: --fault: {error}", file=sys.stderr)
        return 2

    import uvloop

    from engine.stub.server import StubConfig, StubUpstream, bind_socket, serve

    config = StubConfig(
        latency_ms=args.latency_ms,
        faults=faults,
        record_dir=Path(args.record) if args.record else None,
        prompt_cache=args.prompt_cache,
        cache_min_tokens=args.cache_min_tokens if args.cache_min_tokens is not None else DEFAULT_MIN_TOKENS,
    )
    try:
        upstream = StubUpstream(config)
    except OSError as error:
        print(f"error: cannot create the record folder {args.record}: {error}", file=sys.stderr)
        return 1
    try:
        sock = bind_socket(host, args.port)
    except OSError as error:
        print(f"error: cannot listen on {host} port {args.port}: {error.strerror or error}", file=sys.stderr)
        return 1

    port = sock.getsockname()[1]
    if args.port_file:
        try:
            _write_port_file(Path(args.port_file), port)
        except OSError as error:
            print(f"error: cannot write --port-file {args.port_file}: {error}", file=sys.stderr)
            sock.close()
            return 1
    shown_host = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown_host}:{port}", flush=True)
    logging.getLogger("engine.stub").info(
        "stub upstream started on %s:%d (latency %d ms, %d fault(s), prompt cache %s, record %s)",
        host, port, config.latency_ms, len(faults), "on" if config.prompt_cache else "off", args.record or "off",
    )
    uvloop.run(serve(upstream, sock))
    return 0
