"""`leangate serve`: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import logging
import os
import sys

DESCRIPTION = "Run the gateway. Policy edits in the policy folder are picked up live."

# mallopt's parameter number for the arena cap, from glibc's malloc.h.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policies", default="policies", help="Policy folder with default.yaml (default: policies).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: 127.0.0.1).")
    parser.add_argument("--port", type=int, default=8787, help="Port to listen on; 0 picks a free one (default: 8787).")
    parser.add_argument("--port-file", help="Write the port actually bound to this file once listening.")
    parser.add_argument("--no-watch", action="store_true", help="Do not watch the policy folder; reload only by POST /admin/reload.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="Log level (default: info).")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # httpx logs every upstream request at INFO; the decision log already records each one.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, getattr(logging, level.upper())))


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas before the worker threads start; return True when the cap was set.

    glibc gives each thread that allocates concurrently its own arena, up to 8 per core, and each
    arena keeps the memory it freed. The executor threads that embed and the ONNX Runtime threads
    grew the gateway's resident memory by about 50 MB under load that way. An explicit
    MALLOC_ARENA_MAX in the environment wins, and other C libraries are left alone.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


def run(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    if not 0 <= args.port <= 65535:
        print(f"error: --port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return 2
    limit_malloc_arenas()
    from engine.app import create_app
    from engine.policy.errors import PolicyError

    configure_logging(args.log_level)
    try:
        app = create_app(args.policies, watch=not args.no_watch, loopback_only=is_loopback(args.host))
    except PolicyError as error:
        print(f"error: cannot start with an invalid policy:\n{error}", file=sys.stderr)
        return 1

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    if args.port_file:
        with open(args.port_file, "w", encoding="utf-8") as handle:
            handle.write(str(port))
    print(f"leangate listening on http://{args.host}:{port}", flush=True)

    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, loop="uvloop", http="httptools",
                            timeout_graceful_shutdown=10, log_config=None)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
