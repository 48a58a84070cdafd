"""`leangate serve`: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

DESCRIPTION = "Run the gateway. Policy edits in the policy folder are picked up live."


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


def run(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

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
