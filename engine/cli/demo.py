"""`leangate demo`: a stub provider and the gateway on free loopback ports, the example requests sent
through the official SDKs, and a table of what the gateway did with each. Works offline."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.localrun import LocalService, ServiceError, start_gateway, start_stub

DESCRIPTION = (
    "Start `leangate stub-upstream` and `leangate serve` with the default policy on free loopback ports, send "
    "every request in examples/requests/ through the official anthropic and openai SDKs, and print a table."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policies", default="policies", help="Policy folder (default: policies).")
    parser.add_argument("--requests", default="examples/requests", help="Folder of request bodies (default: examples/requests).")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder with logs and decisions.")


def _send(path: Path, clients: dict[str, Any]) -> dict[str, Any]:
    from engine.cli.explain import detect_protocol, read_request

    body, headers = read_request(path)
    protocol = detect_protocol(body)
    stream = bool(body.pop("stream", False))
    body.pop("stream_options", None)
    started = time.perf_counter()
    if protocol == "anthropic":
        client = clients["anthropic"]
        if stream:
            with client.messages.with_raw_response.stream(**body, extra_headers=headers) as raw:
                raw.until_done()
                response_headers = raw.headers
        else:
            raw = client.messages.with_raw_response.create(**body, extra_headers=headers)
            raw.parse()
            response_headers = raw.headers
    else:
        client = clients["openai"]
        api = client.chat.completions if protocol == "openai-chat" else client.responses
        extra = {"stream_options": {"include_usage": True}} if stream and protocol == "openai-chat" else {}
        raw = api.with_raw_response.create(**body, **extra, stream=stream, extra_headers=headers)
        parsed = raw.parse()
        if stream:
            for _ in parsed:
                pass
        response_headers = raw.headers
    latency_ms = (time.perf_counter() - started) * 1000
    return {
        "request": path.name,
        "protocol": protocol,
        "before": response_headers.get("x-leangate-tokens-before", "?"),
        "after": response_headers.get("x-leangate-tokens-after", "?"),
        "class": response_headers.get("x-leangate-class", "-"),
        "tier": response_headers.get("x-leangate-tier", "?"),
        "model": response_headers.get("x-leangate-model", "?"),
        "latency_ms": latency_ms,
        "stream": stream,
    }


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    # Wide enough for the table when the output is a file or a CI log rather than a terminal.
    console = Console(width=None if sys.stdout.isatty() else 120)
    request_dir = Path(args.requests)
    files = sorted(request_dir.glob("*.json"))
    if not files:
        console.print(f"[red]error:[/red] no request files in {request_dir}")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="leangate-demo-"))
    services: list[LocalService] = []
    try:
        stub = start_stub(workdir)
        services.append(stub)
        gateway = start_gateway(workdir, Path(args.policies).resolve(), stub.url)
        services.append(gateway)
        console.print(f"stub provider at {stub.url}, leangate at {gateway.url}")

        table = Table(title="leangate demo: example requests through the gateway")
        numeric = ("before", "after", "saved", "ms")
        for column in ("request", "client", "before", "after", "saved", "class", "tier", "model", "ms"):
            table.add_column(column, justify="right" if column in numeric else "left", no_wrap=column in numeric)
        import anthropic
        import openai

        clients = {
            "anthropic": anthropic.Anthropic(base_url=gateway.url, api_key="demo-key", max_retries=0, timeout=120),
            "openai": openai.OpenAI(base_url=gateway.url + "/v1", api_key="demo-key", max_retries=0, timeout=120),
        }
        failures = 0
        for path in files:
            try:
                row = _send(path, clients)
            except Exception as exc:  # noqa: BLE001 - the demo reports every failure in its table
                failures += 1
                table.add_row(path.name, "-", "-", "-", "-", "-", "[red]failed[/red]", f"{type(exc).__name__}: {str(exc)[:80]}", "-")
                continue
            saved = "-"
            if str(row["before"]).isdigit() and str(row["after"]).isdigit() and int(row["before"]):
                saved = f"{100 * (int(row['before']) - int(row['after'])) / int(row['before']):.0f}%"
            client = {"anthropic": "anthropic", "openai-chat": "chat", "openai-responses": "responses"}[row["protocol"]]
            if row["stream"]:
                client += ", stream"
            table.add_row(row["request"].split(".")[0], client, str(row["before"]), str(row["after"]), saved, row["class"], row["tier"],
                          row["model"], f"{row['latency_ms']:.1f}")
        console.print(table)
        console.print("before/after: estimated input tokens before and after the pipeline. ms: measured at the SDK client, "
                      "including the SDK and the stand-in provider")
        console.print(f"decision records: {workdir / 'decisions.jsonl'}" if args.keep else
                      "run with --keep to look at the decision records")
        return 1 if failures else 0
    except ServiceError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    finally:
        for service in reversed(services):
            service.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
